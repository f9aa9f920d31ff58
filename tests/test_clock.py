"""No single timer stops a clock: odd deadlines and raising callbacks leave the others running."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator

import pytest

from actorq.clock import SystemClock, VirtualClock

ODD_DELAYS = [math.inf, 1e10, 1e300, -math.inf, math.nan]


@pytest.fixture
def clock() -> Iterator[SystemClock]:
    c = SystemClock()
    yield c
    c.close()


def fired(events: list[threading.Event]) -> bool:
    return all(event.wait(10) for event in events)


def boom() -> None:
    raise RuntimeError("callback failed")


def setter(event: threading.Event) -> Callable[[], None]:
    return event.set


def clock_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "actorq-clock"]


@pytest.mark.parametrize("delay", ODD_DELAYS, ids=str)
def test_a_system_clock_keeps_serving_after_an_odd_delay(clock: SystemClock, delay: float) -> None:
    """An infinite, far-future, very old or NaN deadline leaves later timers on time."""
    clock.call_at(clock.now() + delay, lambda: None)
    # Round after round, so the thread has waited on the odd deadline in between.
    for _round in range(5):
        event = threading.Event()
        clock.call_at(clock.now() + 0.01, event.set)
        assert fired([event])


def test_a_system_clock_delay_past_timeout_max_does_not_kill_the_thread(
    clock: SystemClock,
) -> None:
    """A deadline beyond threading.TIMEOUT_MAX is waited for in steps, not passed to wait()."""
    clock.call_at(clock.now() + threading.TIMEOUT_MAX * 2, lambda: None)
    first = threading.Event()
    clock.call_at(clock.now() + 0.01, first.set)
    assert fired([first])
    second = threading.Event()
    clock.call_at(clock.now(), second.set)
    assert fired([second])


def test_a_raising_callback_is_logged_once_and_the_others_run(
    clock: SystemClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The failure is logged with its traceback; timers due with it and after it still run."""
    same_time, after = threading.Event(), threading.Event()
    with caplog.at_level(logging.ERROR, logger="actorq.clock"):
        now = clock.now()
        clock.call_at(now, boom)
        clock.call_at(now, same_time.set)
        assert fired([same_time])
        clock.call_at(clock.now() + 0.01, after.set)
        assert fired([after])
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1
    assert "callback failed" in caplog.text


def test_a_fault_in_the_timer_loop_is_survived(
    clock: SystemClock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever escapes the loop is logged once; the thread goes on with the other timers."""
    warmed = threading.Event()
    clock.call_at(clock.now(), warmed.set)
    assert fired([warmed])
    timers = clock._timers
    real = timers.pop_due
    faults = iter([RuntimeError("broken heap"), RuntimeError("broken heap")])

    def pop_due(now: float) -> list[object]:
        fault = next(faults, None)
        if fault is not None:
            raise fault
        return real(now)  # type: ignore[return-value]

    done = threading.Event()
    with caplog.at_level(logging.ERROR, logger="actorq.clock"):
        monkeypatch.setattr(timers, "pop_due", pop_due)
        clock.call_at(clock.now(), done.set)
        assert fired([done])
    assert caplog.text.count("broken heap") == 1
    assert len(clock_threads()) >= 1


def test_a_virtual_clock_runs_every_due_callback_when_one_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """advance() logs the failure and runs the rest, in time order."""
    clock = VirtualClock()
    ran: list[int] = []
    with caplog.at_level(logging.ERROR, logger="actorq.clock"):
        clock.call_at(clock.now() + 1, lambda: ran.append(1))
        clock.call_at(clock.now() + 2, boom)
        clock.call_at(clock.now() + 3, lambda: ran.append(3))
        clock.advance(5)
        clock.call_at(clock.now() - 1, boom)  # due at once, in this thread
    assert ran == [1, 3]
    assert len([r for r in caplog.records if r.exc_info]) == 2


def test_a_virtual_clock_orders_odd_deadlines_and_never_runs_nan_or_inf() -> None:
    """-inf runs at once, far deadlines run when reached, +inf and NaN never."""
    clock = VirtualClock()
    ran: list[str] = []
    clock.call_at(-math.inf, lambda: ran.append("-inf"))
    clock.call_at(math.inf, lambda: ran.append("inf"))
    clock.call_at(math.nan, lambda: ran.append("nan"))
    clock.call_at(clock.now() + 1e10, lambda: ran.append("far"))
    clock.call_at(clock.now() + 1, lambda: ran.append("soon"))
    clock.advance(2)
    assert ran == ["-inf", "soon"]
    clock.advance(1e10)
    assert ran == ["-inf", "soon", "far"]


def test_a_virtual_clock_refuses_a_nan_advance() -> None:
    """Time cannot move by NaN: it would make every later comparison false."""
    clock = VirtualClock()
    with pytest.raises(ValueError, match="nan"):
        clock.advance(math.nan)
