"""Cron through the ActorSystem: real actors on a VirtualClock, a file journal, restarts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actorq import ActorSystem, JobStatus, VirtualClock, current_job
from actorq.errors import (
    InvalidCronExpression,
    InvalidSchedule,
    NotSerializable,
    ScheduleNotFound,
    UnknownTask,
    UnknownTimeZone,
)
from tests.helpers import wait_until

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


class Ran:
    """Job ids of the runs, in order, from the worker threads."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        with self.lock:
            self.ids.append(current_job().id)

    def __len__(self) -> int:
        with self.lock:
            return len(self.ids)


def advance_to_next_fire(system: ActorSystem, clock: VirtualClock, name: str) -> float:
    """Move the clock to the schedule's next fire once its timer is armed; returns the instant."""
    target = next(s for s in system.schedules() if s.name == name).next_fires[0].timestamp()

    def armed() -> bool:
        deadline = clock.next_deadline()
        return deadline is not None and deadline <= target

    wait_until(armed, interval=0.0002)
    clock.advance(target - clock.now())
    return target


def test_a_year_of_an_hourly_schedule_on_the_virtual_clock() -> None:
    """Hourly in Berlin through real actors for a year: every wall-clock hour runs once."""
    clock = VirtualClock(start=JAN_1)
    system = ActorSystem(workers=2, journal="memory", clock=clock)
    ran = Ran()
    system.cron("0 * * * *", tz="Europe/Berlin")(system.task("tick")(ran))
    instants = []
    with system:
        for _ in range(8760):
            instants.append(advance_to_next_fire(system, clock, "tick"))
            # Generous: one job per step, but a loaded machine can stall a thread for seconds.
            wait_until(lambda: len(ran) == len(instants), timeout=60, interval=0.0002)
        info = system.schedules()[0]
    assert ran.ids == [f"cron:tick:{round(t)}" for t in instants]
    assert info.fired == 8760 and info.missed == 0 and info.skipped == 0
    zone = info.next_fires[0].tzinfo
    berlin = [datetime.fromtimestamp(t, UTC).astimezone(zone) for t in instants]
    walls = {b.strftime("%Y-%m-%d %H:%M") for b in berlin}
    assert len(walls) == 8760 and all(b.minute == 0 for b in berlin)
    assert "2026-10-25 02:00" in walls and "2026-03-29 02:00" not in walls


def build(journal: str, clock: VirtualClock, ran: Ran, **options: Any) -> ActorSystem:
    system = ActorSystem(workers=2, journal=journal, clock=clock)
    system.cron("0 * * * *", name="hourly", args=("x",), **options)(system.task("work")(ran))
    return system


@pytest.mark.parametrize(
    ("catch_up", "window", "hours"),
    [
        ("skip", 86400, []),
        ("one", 86400, [5]),
        ("all", 86400, [2, 3, 4, 5]),
        ("all", 9000, [3, 4, 5]),
    ],
)
def test_a_restart_spanning_several_fires_follows_the_catch_up_rule(
    tmp_path: Path, catch_up: str, window: float, hours: list[int]
) -> None:
    """Down from 1:30 to 5:30 on the file journal: 2, 3, 4 and 5 o'clock are caught up or not."""
    clock = VirtualClock(start=JAN_1)
    ran = Ran()
    journal = str(tmp_path / "journal")
    with build(journal, clock, ran, catch_up=catch_up, window=window) as system:
        advance_to_next_fire(system, clock, "hourly")
        wait_until(lambda: len(ran) == 1)
        clock.advance(1800)
    clock.advance(4 * 3600)
    with build(journal, clock, ran, catch_up=catch_up, window=window) as system:
        wait_until(lambda: system.schedules()[0].high_water_mark == JAN_1 + 5 * 3600)
        wait_until(lambda: len(ran) == 1 + len(hours))
        assert system.join(10)
        info = system.schedules()[0]
        assert info.missed == 4 - len(hours)
        assert info.next_fires[0].timestamp() == JAN_1 + 6 * 3600
        advance_to_next_fire(system, clock, "hourly")
        wait_until(lambda: len(ran) == 2 + len(hours))
    expected = [1, *hours, 6]
    # Caught-up jobs run side by side on two workers: compare as sets of fires.
    assert sorted(ran.ids) == [f"cron:hourly:{round(JAN_1 + h * 3600)}" for h in expected]


def test_a_redeclared_schedule_keeps_its_high_water_mark(tmp_path: Path) -> None:
    """Starting again with the same @cron neither refires nor forgets what fired."""
    clock = VirtualClock(start=JAN_1)
    ran = Ran()
    journal = str(tmp_path / "journal")
    with build(journal, clock, ran) as system:
        advance_to_next_fire(system, clock, "hourly")
        wait_until(lambda: len(ran) == 1)
    with build(journal, clock, ran) as system:
        info = system.schedules()[0]
        assert info.fired == 1 and info.high_water_mark == JAN_1 + 3600
        assert system.join(5)
    assert len(ran) == 1


def test_pause_resume_trigger_and_delete() -> None:
    """The facade's schedule commands, and ScheduleNotFound for a name nobody declared."""
    clock = VirtualClock(start=JAN_1)
    system = ActorSystem(workers=1, journal="memory", clock=clock)
    ran = Ran()
    system.task("work")(ran)
    with system:
        info = system.schedule("nightly", "30 2 * * *", "work", 7, tz="America/Los_Angeles")
        assert [t.isoformat() for t in info.next_fires[:2]] == [
            "2026-01-01T02:30:00-08:00",
            "2026-01-02T02:30:00-08:00",
        ]
        assert system.pause_schedule("nightly").paused
        assert system.schedules()[0].next_fires == []
        clock.advance(86400)
        assert system.join(5) and len(ran) == 0
        handle = system.trigger_schedule("nightly")
        assert handle.result(5) is None
        assert system.job(handle.id).status is JobStatus.SUCCEEDED
        resumed = system.resume_schedule("nightly")
        assert not resumed.paused and resumed.fired == 1
        assert resumed.next_fires[0].isoformat() == "2026-01-02T02:30:00-08:00"
        system.delete_schedule("nightly")
        assert system.schedules() == []
        for command in (
            system.pause_schedule,
            system.resume_schedule,
            system.trigger_schedule,
            system.delete_schedule,
        ):
            with pytest.raises(ScheduleNotFound):
                command("nightly")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.schedule("a", "61 * * * *", "work"), InvalidCronExpression),
        (lambda s: s.schedule("a", "* * *", "work"), InvalidCronExpression),
        (lambda s: s.schedule("a", "0 0 30 2 *", "work"), InvalidCronExpression),
        (lambda s: s.schedule("a", "0 * * * *", "work", tz="Mars/Olympus"), UnknownTimeZone),
        (lambda s: s.schedule("a", "0 * * * *", "nope"), UnknownTask),
        (lambda s: s.schedule("a b", "0 * * * *", "work"), InvalidSchedule),
        (lambda s: s.schedule("a", "0 * * * *", "work", catch_up="most"), InvalidSchedule),
        (lambda s: s.schedule("a", "0 * * * *", "work", overlap="queue"), InvalidSchedule),
        (lambda s: s.schedule("a", "0 * * * *", "work", window=-1), InvalidSchedule),
        (lambda s: s.schedule("a", "0 * * * *", "work", fall_back="never"), InvalidSchedule),
        (lambda s: s.schedule("a", "0 * * * *", "work", object()), NotSerializable),
        (lambda s: s.cron("0 * * * *", tz="Nowhere/City")(lambda: None), UnknownTimeZone),
        (lambda s: s.cron("every hour")(lambda: None), InvalidCronExpression),
    ],
)
def test_bad_schedules_are_refused_and_change_nothing(call: Any, error: type) -> None:
    """Each bad input raises its named error; the schedules and tasks stay as they were."""
    clock = VirtualClock(start=JAN_1)
    system = ActorSystem(workers=1, journal="memory", clock=clock)
    system.task("work")(Ran())
    with system:
        system.schedule("keep", "0 * * * *", "work")
        before = system.schedules()
        with pytest.raises(error):
            call(system)
        assert system.schedules() == before
        assert set(system.tasks) == {"work"}


def test_a_new_leader_on_redis_catches_up_each_fire_once(redis_url: str) -> None:
    """On the Redis journal, a second system taking over after the first stopped fires each
    instant it missed once, and none the first one fired."""
    clock = VirtualClock(start=JAN_1)
    ran = Ran()
    with build(redis_url, clock, ran, catch_up="all") as system:
        for fired in (1, 2):
            advance_to_next_fire(system, clock, "hourly")
            wait_until(lambda n=fired: len(ran) == n)  # type: ignore[misc]
    clock.advance(3.5 * 3600)
    with build(redis_url, clock, ran, catch_up="all") as system:
        wait_until(lambda: len(ran) == 5)
        assert system.join(10)
        info = system.schedules()[0]
        assert (info.fired, info.missed, info.high_water_mark) == (5, 0, JAN_1 + 5 * 3600)
    assert sorted(ran.ids) == [f"cron:hourly:{round(JAN_1 + h * 3600)}" for h in range(1, 6)]
