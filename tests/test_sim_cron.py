"""Cron schedules in a simulation: a year in virtual time, DST, crashes, determinism, and
the invariant "each cron instant fired once" caught failing on a broken core."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from actorq import ActorSystem
from actorq.core import firing
from actorq.core.events import ScheduleFired, ScheduleSkipped
from actorq.errors import InvalidCronExpression, UnknownTask
from actorq.sim import SimReport, Simulation

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YEAR = datetime(2026, 1, 1, tzinfo=BERLIN)
YEAR = 365 * 86400.0


def hourly_system(fall_back: Any = "once") -> ActorSystem:
    system = ActorSystem(workers=2)

    @system.cron("0 * * * *", tz="Europe/Berlin", fall_back=fall_back)
    @system.task("tick")
    def tick() -> str:
        return "tick"

    return system


def fires_of(report: SimReport, sim: Simulation, name: str) -> int:
    info = sim.schedules()[name]
    assert info.fired == report.jobs  # every job of this run is a fire of this schedule
    return int(info.fired)


@pytest.mark.parametrize(("fall_back", "expected"), [("once", 8759), ("twice", 8760)])
def test_a_year_of_an_hourly_berlin_schedule(fall_back: str, expected: int) -> None:
    # 2026 in Berlin: 8,760 local hours; on 29 March 02:00 does not exist (its fire
    # runs right after the jump, at 03:00, which is that hour's own fire), and on
    # 25 October 02:00 happens twice (fired again only with fall_back="twice").
    sim = Simulation(hourly_system(fall_back), seed=3, start=NEW_YEAR, snapshot_every=86400.0)
    report = sim.run(until=YEAR + 60)
    assert fires_of(report, sim, "tick") == expected
    assert report.succeeded == expected
    info = sim.schedules()["tick"]
    assert info.missed == info.skipped == 0
    last = datetime.fromtimestamp(info.high_water_mark, BERLIN)
    assert last == datetime(2027, 1, 1, tzinfo=BERLIN)
    inv = report.invariants["cron_fired_once"]
    assert inv.held is True and inv.checks >= expected


def test_spring_forward_and_fall_back_days_in_virtual_time() -> None:
    system = ActorSystem(workers=1)
    instants: list[str] = []

    @system.task("note")
    def note() -> None:
        from actorq import current_job

        instants.append(current_job().id)

    sim = Simulation(system, seed=1, start=datetime(2026, 3, 28, 12, tzinfo=BERLIN))
    sim.schedule("half-past-two", "30 2 * * *", "note", tz="Europe/Berlin")
    report = sim.run(until=2 * 86400)
    local = [
        datetime.fromtimestamp(int(i.rsplit(":", 1)[1]), BERLIN).strftime("%d %H:%M")
        for i in instants
    ]
    # 29 March has no 02:30: the fire runs right after the jump, at 03:00.
    assert local == ["29 03:00", "30 02:30"]
    assert report.invariants["cron_fired_once"].held is True


def crashing(seed: int) -> tuple[Simulation, SimReport]:
    system = ActorSystem(workers=2)

    @system.cron("*/5 * * * *", tz="America/Los_Angeles", catch_up="all", overlap="allow")
    @system.task("every5")
    def every5() -> int:
        return 5

    @system.cron("* * * * *", catch_up="one")
    @system.task("minutely")
    def minutely() -> int:
        return 1

    sim = Simulation(system, seed=seed, start=datetime(2026, 11, 1, tzinfo=ZoneInfo("UTC")))
    sim.faults.dispatcher_crashes(every=900.0, mid_commit=0.05, end=5 * 3600)
    sim.faults.dispatcher_crashes(at=(3600.0, 3600.5, 7205.0))
    return sim, sim.run(until=6 * 3600 + 60)


def test_cron_across_dispatcher_crashes_fires_each_instant_once() -> None:
    sim, report = crashing(11)
    assert report.dispatcher_restarts >= 4
    inv = report.invariants["cron_fired_once"]
    assert inv.held is True, inv.first_violation
    infos = sim.schedules()
    # Los Angeles leaves DST on 1 November 2026: 6 hours are 72 five-minute instants.
    assert infos["every5"].fired + infos["every5"].missed + infos["every5"].skipped == 72
    assert infos["every5"].missed == 0  # catch_up="all" within the window fires them all
    assert infos["minutely"].fired + infos["minutely"].missed + infos["minutely"].skipped == 360
    for name in ("no_acknowledged_loss", "dead_letters_balanced"):
        assert report.invariants[name].held is True


def test_cron_runs_are_deterministic() -> None:
    _, first = crashing(5)
    _, again = crashing(5)
    _, other = crashing(6)
    assert first.digest == again.digest
    assert first.jobs == again.jobs
    assert other.digest != first.digest


def test_pause_resume_and_trigger_in_virtual_time() -> None:
    system = hourly_system()
    sim = Simulation(system, seed=2, start=NEW_YEAR)
    sim.pause_schedule("tick", at=3 * 3600 + 10, resume_at=6 * 3600 + 10)
    sim.trigger_schedule("tick", at=4 * 3600)
    report = sim.run(until=10 * 3600 + 60)
    info = sim.schedules()["tick"]
    # Hours 1-3 and 7-10 fire; 4-6 are paused (not caught up); one manual fire.
    assert info.fired == 3 + 4 + 1
    assert report.invariants["cron_fired_once"].held is True


def test_bad_schedules_are_refused_before_the_run() -> None:
    sim = Simulation(hourly_system(), seed=1)
    with pytest.raises(InvalidCronExpression):
        sim.schedule("bad", "61 * * * *", "tick")
    with pytest.raises(UnknownTask):
        sim.schedule("nobody", "0 * * * *", "missing")
    report = sim.run(until=3600 + 60)
    assert set(sim.schedules()) == {"tick"}
    assert report.jobs == 1


def test_a_doubled_fire_is_caught(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    submit = firing.CronDesk._submit

    def twice(
        self: firing.CronDesk, record: Any, instant: float, now: float, *, manual: bool
    ) -> str:
        job = submit(self, record, instant, now, manual=manual)
        if not manual and instant - record.created_at > 5 * 3600:  # later: once is not enough
            self.core.persist(ScheduleFired(record.spec.name, instant, job, False, now))
        return job

    monkeypatch.setattr(firing.CronDesk, "_submit", twice)
    report = Simulation(hourly_system(), seed=1, start=NEW_YEAR).run(until=86400)
    inv = report.invariants["cron_fired_once"]
    assert inv.held is False
    assert inv.first_violation is not None and "twice" in inv.first_violation
    assert "replay with" in capsys.readouterr().err


def test_a_silently_dropped_instant_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    fire = firing.CronDesk._fire

    def drop_noon(self: firing.CronDesk, record: Any, instant: float, now: float) -> None:
        if datetime.fromtimestamp(instant, BERLIN).hour == 12:
            # Moves the mark past the instant without counting it anywhere.
            self.core.persist(ScheduleSkipped(record.spec.name, 0, instant, "overlap", now))
            return
        fire(self, record, instant, now)

    monkeypatch.setattr(firing.CronDesk, "_fire", drop_noon)
    report = Simulation(hourly_system(), seed=1, start=NEW_YEAR).run(until=86400)
    inv = report.invariants["cron_fired_once"]
    assert inv.held is False
    assert inv.first_violation is not None and "accounts for" in inv.first_violation


def test_an_instant_left_undecided_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    timer = firing.CronDesk.timer

    def deaf_after_noon(self: firing.CronDesk, name: str, token: float, now: float) -> None:
        if datetime.fromtimestamp(now, BERLIN).hour < 12:
            timer(self, name, token, now)

    monkeypatch.setattr(firing.CronDesk, "timer", deaf_after_noon)
    report = Simulation(hourly_system(), seed=1, start=NEW_YEAR).run(until=86400)
    inv = report.invariants["cron_fired_once"]
    assert inv.held is False
    assert inv.first_violation is not None and "undecided" in inv.first_violation
