"""Injectable time: every delay, backoff, timeout and retention reads one Clock.

`SystemClock` is real time with one timer thread per clock. `VirtualClock`
only moves when told to (`advance`), firing due callbacks in the advancing
thread, so a simulation can run hours of backoff in milliseconds (the model
is trio's MockClock with `jump()`).

No single timer can stop a clock: a callback that raises is logged and the
others still run; a deadline of NaN (which cannot be ordered) never fires and
is logged; +inf never fires; -inf and any passed deadline fire at once; a
deadline centuries away is waited for in bounded steps, because
`Condition.wait` overflows past `threading.TIMEOUT_MAX`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

# Wake at least this often: keeps every wait far below threading.TIMEOUT_MAX.
_MAX_WAIT = 3600.0
_RETRY = 0.05


class TimerHandle:
    """A scheduled callback; `cancel()` makes it a no-op if it has not run yet."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (timestamps and deadlines survive restarts)."""

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` (quickly; it should only send a message) at time `when`."""

    def close(self) -> None:
        """Stop any thread the clock runs; pending callbacks are dropped."""


class _TimerQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()

    def push(self, handle: TimerHandle) -> bool:
        """Add a timer; True if it is now the earliest. A NaN deadline is dropped."""
        if math.isnan(handle.when):
            log.error("timer %r has a NaN deadline; it will never run", handle.callback)
            return False
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return self._heap[0][2] is handle

    def pop_due(self, now: float) -> list[TimerHandle]:
        due = []
        while self._heap and self._heap[0][0] <= now:
            handle = heapq.heappop(self._heap)[2]
            if not handle.cancelled:
                due.append(handle)
        return due

    def next_when(self) -> float | None:
        return self._heap[0][0] if self._heap else None


class SystemClock:
    """Wall-clock time; callbacks run on one daemon thread started on first use."""

    def __init__(self) -> None:
        self._timers = _TimerQueue()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        with self._cond:
            if self._closed:
                return handle
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="actorq-clock", daemon=True)
                self._thread.start()
            if self._timers.push(handle):
                self._cond.notify()
        return handle

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        # The loop is its own supervisor: whatever escapes one pass (a callback's
        # error is already handled) is logged and the next pass serves the others.
        failure = ""
        while True:
            try:
                if self._serve():
                    return
            except Exception as exc:
                if repr(exc) != failure:  # a fault that repeats is logged once
                    failure = repr(exc)
                    log.exception("the clock thread failed; it goes on serving the other timers")
                with self._cond:
                    self._cond.wait(_RETRY)  # not a hot loop if the fault persists

    def _serve(self) -> bool:
        """Run the timers due now, or wait for the next one; True once closed."""
        with self._cond:
            if self._closed:
                return True
            due = self._timers.pop_due(time.time())
            if not due:
                when = self._timers.next_when()
                wait = _MAX_WAIT if when is None else when - time.time()
                self._cond.wait(min(max(0.0, wait), _MAX_WAIT))
                return False
        _run_all(due)
        return False


def _run_all(due: list[TimerHandle]) -> None:
    for handle in due:
        try:
            handle.callback()
        except Exception:
            log.exception("timer callback %r raised; the other timers still run", handle.callback)


class VirtualClock:
    """Time that moves only by `advance()`; for simulations and tests."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._timers = _TimerQueue()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """As with real time, a deadline already passed runs at once (in this thread)."""
        handle = TimerHandle(when, callback)
        with self._lock:
            due = when <= self._now
            if not due:
                self._timers.push(handle)
        if due:
            _run_all([handle])
        return handle

    def advance(self, seconds: float) -> None:
        """Move time forward, running every callback that falls due, in time order."""
        if not seconds >= 0:
            raise ValueError(f"a clock cannot go backwards or by {seconds}")
        target = self._now + seconds
        while True:
            with self._lock:
                when = self._timers.next_when()
                if when is None or when > target:
                    self._now = target
                    return
                self._now = max(self._now, when)
                due = self._timers.pop_due(self._now)
            _run_all(due)

    def next_deadline(self) -> float | None:
        with self._lock:
            return self._timers.next_when()

    def close(self) -> None:
        """Nothing runs on its own."""
