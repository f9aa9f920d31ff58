"""Cron in the pure core: fire instants, DST days, catch-up, overlap, crash and replay.

A small simulator drives `DispatchCore` on one thread in virtual time: it
keeps the timers the core arms, finishes jobs after a chosen run time, and
treats each decision's events as one commit, so a crash is "drop the
uncommitted decision and rebuild the state from the committed events".
"""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from actorq.core import cron
from actorq.core import effects as fx
from actorq.core import messages as m
from actorq.core.dispatch import DispatchConfig, DispatchCore
from actorq.core.events import ScheduleFired, ScheduleSkipped, Submitted
from actorq.core.job import JobStatus, pack, unpack
from actorq.core.schedules import ScheduleSpec
from actorq.core.state import DispatcherState
from actorq.persistence.codec import decode_batch_at, encode_batch

BERLIN = "Europe/Berlin"
LA = "America/Los_Angeles"


def at(tz: str, *fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(tz), fold=fold).timestamp()  # type: ignore[arg-type,misc]


def local(instant: float, tz: str) -> str:
    return datetime.fromtimestamp(instant, UTC).astimezone(ZoneInfo(tz)).isoformat()


def fires_on(expr: str, tz: str, day: tuple[int, int, int], fall_back: Any = "once") -> list[str]:
    """Every fire of `expr` on one local calendar day, as local ISO times."""
    start = at(tz, *day) - 1
    end = at(tz, *day, 23, 59, 59)
    return [local(i, tz) for i in cron.due(expr, tz, start, end, fall_back)]


def schedule(
    name: str = "s", expr: str = "0 * * * *", tz: str = "UTC", **opts: Any
) -> ScheduleSpec:
    return ScheduleSpec(
        name, expr, tz, "t", pack([[], {}]), "default", 0, None, None, "at_least_once", **opts
    )


class Sim:
    """The core in virtual time; every decision is one commit."""

    def __init__(self, now: float, run_time: float = 1.0, workers: int = 2) -> None:
        self.now = now
        self.run_time = run_time
        self.workers = [f"w{i}" for i in range(workers)]
        self.log: list[list[Any]] = []  # committed decisions' events
        self.timers: list[tuple[float, int, Any]] = []
        self.seq = 0
        self.core = self._core(DispatcherState())
        self.core.recovered(now)
        self._run(self.core.take())
        for w in self.workers:
            self._handle(m.Ready(w, 1, 1, credits=1))

    def _core(self, state: DispatcherState) -> DispatchCore:
        return DispatchCore(
            DispatchConfig(retention=10 * 86400), self.workers, epoch=1,
            rng=random.Random(1), state=state,
        )  # fmt: skip

    def _handle(self, message: Any) -> None:
        self.core.handle(message, self.now)
        self._run(self.core.take())

    def command(self, fn: Any) -> Any:
        result = fn(self.core, self.now)
        self._run(self.core.take())
        return result

    def _run(self, decision: fx.Decision, commit: bool = True) -> None:
        if decision.events and commit:
            # Through the codec, as a journal would store them.
            self.log.append(decode_batch_at(encode_batch(decision.events), "sim", 0))
        for effect in decision.now + decision.durable:
            if isinstance(effect, fx.Arm):
                for timer in effect.timers:
                    self._push(timer[0], m.TimersFired([timer]))
            elif isinstance(effect, fx.Tell) and isinstance(effect.message, m.Assign):
                for job_id, attempt, _task, _payload in effect.message.jobs:
                    result = (job_id, attempt, True, pack(None), None, (), self.run_time)
                    self._push(self.now + self.run_time, ("finish", effect.to, result))

    def _push(self, when: float, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.timers, (when, self.seq, item))

    def run_until(self, until: float) -> None:
        while self.timers and self.timers[0][0] <= until:
            when, _, item = heapq.heappop(self.timers)
            self.now = max(self.now, when)
            if isinstance(item, tuple):
                _, worker, result = item
                slot = self.core.workers[worker]
                self._handle(m.Finished(worker, slot.incarnation, 1, [result]))
                self._handle(m.Ready(worker, slot.incarnation, 1, credits=1))
            else:
                self._handle(item)
        self.now = max(self.now, until)

    def crash_and_recover(self, now: float, *, lose_last: bool = False) -> None:
        """Rebuild the state from the committed log, as recovery does, at time `now`."""
        if lose_last:
            self.log.pop()
        state = DispatcherState()
        for events in self.log:
            for event in events:
                state.apply(event)
        self.timers = []
        self.now = now
        self.core = self._core(state)
        self.core.recovered(now)
        self._run(self.core.take())
        for w in self.workers:
            self._handle(m.Ready(w, 1, 1, credits=1))

    def events(self, kind: type) -> list[Any]:
        return [e for batch in self.log for e in batch if isinstance(e, kind)]

    def fired(self, name: str = "s") -> list[float]:
        return [e.instant for e in self.events(ScheduleFired) if e.name == name]


# -- fire instants and DST ---------------------------------------------------------


def test_berlin_spring_forward_fixed_time_runs_right_after_the_jump() -> None:
    """2026-03-29 Berlin: 02:30 does not exist; the daily 02:30 job runs at 03:00 CEST."""
    assert fires_on("30 2 * * *", BERLIN, (2026, 3, 29)) == ["2026-03-29T03:00:00+02:00"]
    assert fires_on("30 2 * * *", BERLIN, (2026, 3, 30)) == ["2026-03-30T02:30:00+02:00"]


def test_berlin_spring_forward_hourly_has_23_fires() -> None:
    """The day has 23 hours; an hourly schedule fires at each, none in the missing hour."""
    day = fires_on("0 * * * *", BERLIN, (2026, 3, 29))
    assert len(day) == 23
    assert "2026-03-29T01:00:00+01:00" in day and "2026-03-29T03:00:00+02:00" in day
    assert not any("T02:" in t for t in day)


def test_berlin_fall_back_hourly_fires_once_for_the_repeated_hour() -> None:
    """2026-10-25 Berlin: 02:00 happens twice; by default it fires once, at the first."""
    once = fires_on("0 * * * *", BERLIN, (2026, 10, 25))
    assert len(once) == 24
    assert [t for t in once if "T02:" in t] == ["2026-10-25T02:00:00+02:00"]
    twice = fires_on("0 * * * *", BERLIN, (2026, 10, 25), "twice")
    assert len(twice) == 25
    assert [t for t in twice if "T02:" in t] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
    ]


def test_berlin_fall_back_fixed_time_once_or_twice() -> None:
    """A daily 02:30 job runs once on the fall-back day, or twice with fall_back='twice'."""
    assert fires_on("30 2 * * *", BERLIN, (2026, 10, 25)) == ["2026-10-25T02:30:00+02:00"]
    assert fires_on("30 2 * * *", BERLIN, (2026, 10, 25), "twice") == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
    ]
    assert fires_on("*/20 2 * * *", BERLIN, (2026, 10, 25)) == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:20:00+02:00",
        "2026-10-25T02:40:00+02:00",
    ]


def test_los_angeles_spring_forward() -> None:
    """2026-03-08 LA: 02:30 runs at 03:00 PDT; the hourly schedule has 23 fires."""
    assert fires_on("30 2 * * *", LA, (2026, 3, 8)) == ["2026-03-08T03:00:00-07:00"]
    assert len(fires_on("0 * * * *", LA, (2026, 3, 8))) == 23
    assert fires_on("15 2 * * *", LA, (2026, 3, 9)) == ["2026-03-09T02:15:00-07:00"]


def test_los_angeles_fall_back() -> None:
    """2026-11-01 LA: 01:00-01:59 happens twice; fires once unless asked for both."""
    assert fires_on("30 1 * * *", LA, (2026, 11, 1)) == ["2026-11-01T01:30:00-07:00"]
    assert fires_on("30 1 * * *", LA, (2026, 11, 1), "twice") == [
        "2026-11-01T01:30:00-07:00",
        "2026-11-01T01:30:00-08:00",
    ]
    assert len(fires_on("0 * * * *", LA, (2026, 11, 1))) == 24
    assert len(fires_on("0 * * * *", LA, (2026, 11, 1), "twice")) == 25


def test_a_fire_after_a_high_water_mark_inside_the_repeated_hour_is_not_earlier() -> None:
    """From 02:45 CET (the second 02:45), the next 02:30 fire is the next day's, never back."""
    hwm = at(BERLIN, 2026, 10, 25, 2, 45, fold=1)
    nxt = cron.next_fire("30 2 * * *", BERLIN, hwm)
    assert nxt is not None and local(nxt, BERLIN) == "2026-10-26T02:30:00+01:00"
    nxt2 = cron.next_fire("30 2 * * *", BERLIN, at(BERLIN, 2026, 10, 25, 2, 15, fold=1), "twice")
    assert nxt2 is not None and local(nxt2, BERLIN) == "2026-10-25T02:30:00+01:00"


# -- the core over time -----------------------------------------------------------


def test_a_year_of_an_hourly_schedule_in_the_core() -> None:
    """Hourly in Berlin for 2026: every wall-clock hour once, the repeated hour once."""
    start = at(BERLIN, 2026, 1, 1)
    sim = Sim(start - 1)
    sim.command(lambda c, now: c.cron.set(schedule(tz=BERLIN), now))
    sim.run_until(at(BERLIN, 2026, 12, 31, 23, 30))
    fired = sim.fired()
    assert len(fired) == 365 * 24 - 1  # the missing hour has no fire; the repeated fires once
    assert fired == sorted(set(fired))
    walls = [local(i, BERLIN)[:16] for i in fired]
    assert len(set(walls)) == len(walls)
    assert all(w.endswith(":00") for w in walls)
    jobs = sim.events(Submitted)
    assert [j.spec.idempotency_key for j in jobs] == [f"cron:s:{round(i)}" for i in fired]
    assert all(sim.core.state.jobs[j.spec.id].status is JobStatus.SUCCEEDED for j in jobs[-10:])


@pytest.mark.parametrize(
    ("mode", "window", "expect_fired", "expect_missed"),
    [
        ("skip", 86400, [], 4),
        ("one", 86400, [5], 3),
        ("all", 86400, [2, 3, 4, 5], 0),
        ("all", 2.5 * 3600, [3, 4, 5], 1),
        ("one", 1500, [], 4),
        ("one", 1800, [5], 3),
    ],
)
def test_catch_up_after_a_restart_spanning_several_fires(
    mode: str, window: float, expect_fired: list[int], expect_missed: int
) -> None:
    """Down from 1:30 to 5:30: the fires at 2, 3, 4 and 5 o'clock follow the catch-up rule."""
    day = at("UTC", 2026, 6, 1)
    sim = Sim(day)
    sim.command(lambda c, now: c.cron.set(schedule(catch_up=mode, window=window), now))
    sim.run_until(day + 1.5 * 3600)
    assert sim.fired() == [day + 3600]
    sim.crash_and_recover(day + 5.5 * 3600)
    sim.run_until(day + 5.9 * 3600)
    assert sim.fired() == [day + 3600] + [day + h * 3600 for h in expect_fired]
    missed = sum(e.count for e in sim.events(ScheduleSkipped) if e.reason == "missed")
    assert missed == expect_missed
    record = sim.core.state.schedules["s"]
    assert record.missed == expect_missed
    assert record.hwm == day + 5 * 3600
    sim.run_until(day + 7.5 * 3600)  # live again: 6 and 7 o'clock fire on time
    assert sim.fired()[-2:] == [day + 6 * 3600, day + 7 * 3600]


def test_a_crash_between_fire_and_commit_fires_once_after_recovery() -> None:
    """The fire's decision is lost before it is written: recovery fires it, once, same job."""
    day = at("UTC", 2026, 6, 1)
    sim = Sim(day)
    sim.command(lambda c, now: c.cron.set(schedule(), now))
    sim.run_until(day + 3600)
    assert any(isinstance(e, ScheduleFired) for e in sim.log[-1])
    lost = sim.events(ScheduleFired)[-1]
    sim.crash_and_recover(day + 3600 + 5, lose_last=True)
    assert sim.fired() == [day + 3600]
    again = sim.events(ScheduleFired)[-1]
    assert again.job_id == lost.job_id
    assert [e.spec.id for e in sim.events(Submitted)] == [lost.job_id]
    sim.crash_and_recover(day + 3600 + 10)  # and a restart after it was written: nothing new
    sim.run_until(day + 3600 + 20)
    assert sim.fired() == [day + 3600]


@pytest.mark.parametrize(
    ("overlap", "expect_fired", "expect_skipped"),
    [
        ("allow", [1, 2, 3, 4, 5, 6], 0),
        ("skip", [1, 3, 5], 3),
        ("buffer_one", [1, 2, 3, 4], 1),
    ],
)
def test_overlap_when_the_previous_job_still_runs(
    overlap: str, expect_fired: list[int], expect_skipped: int
) -> None:
    """Jobs run 1.5 periods: allow fires each; skip drops every other; buffer_one waits.

    buffer_one holds one fire back until the previous job ends, then submits
    it; a fire that finds one held back already is skipped.
    """
    day = at("UTC", 2026, 6, 1)
    sim = Sim(day, run_time=90 * 60, workers=4)
    sim.command(lambda c, now: c.cron.set(schedule(overlap=overlap), now))
    sim.run_until(day + 6.2 * 3600)
    assert sim.fired() == [day + h * 3600 for h in expect_fired]
    assert sim.core.state.schedules["s"].skipped == expect_skipped
    if overlap == "buffer_one":
        # The buffered fire is submitted when the previous job ends, not at its instant.
        submitted = {e.spec.id: e.at for e in sim.events(Submitted)}
        assert submitted[f"cron:s:{round(day + 2 * 3600)}"] == day + 3600 + 90 * 60
        assert sim.core.state.schedules["s"].buffered == day + 6 * 3600


def test_pause_resume_delete_and_trigger() -> None:
    """Paused fires are not caught up; a trigger fires now; a deleted schedule stops."""
    day = at("UTC", 2026, 6, 1)
    sim = Sim(day)
    sim.command(lambda c, now: c.cron.set(schedule(), now))
    sim.run_until(day + 1.5 * 3600)
    sim.command(lambda c, now: c.cron.pause("s", True, now))
    sim.run_until(day + 3.5 * 3600)
    assert sim.fired() == [day + 3600]
    info = sim.command(lambda c, now: c.cron.pause("s", False, now))
    assert info.next_fires[0].timestamp() == day + 4 * 3600
    job = sim.command(lambda c, now: c.cron.trigger("s", now))
    assert job.startswith("cron:s:manual:")
    sim.run_until(day + 4.5 * 3600)
    assert sim.fired() == [day + 3600, day + 3.5 * 3600, day + 4 * 3600]
    assert sim.core.state.schedules["s"].hwm == day + 4 * 3600
    sim.command(lambda c, now: c.cron.delete("s", now))
    sim.run_until(day + 8 * 3600)
    assert len(sim.fired()) == 3
    assert "s" not in sim.core.state.schedules


def test_replay_and_snapshot_rebuild_the_same_schedules() -> None:
    """State from the log, from a snapshot, and live are equal; old snapshots still load."""
    day = at(BERLIN, 2026, 10, 24)
    sim = Sim(day, run_time=5400)
    sim.command(lambda c, now: c.cron.set(schedule(tz=BERLIN, overlap="buffer_one"), now))
    sim.run_until(day + 30 * 3600)
    live = sim.core.state.logical()
    replayed = DispatcherState()
    for batch in sim.log:
        for event in batch:
            replayed.apply(event)
    assert replayed.logical() == live
    snapshot = unpack(pack(sim.core.state.to_snapshot()))  # as a journal stores it
    assert snapshot["schedules"]
    assert DispatcherState.from_snapshot(snapshot).logical() == live
    old = {k: v for k, v in snapshot.items() if k != "schedules"}
    assert DispatcherState.from_snapshot(old).schedules == {}
