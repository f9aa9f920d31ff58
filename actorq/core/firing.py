"""The Dispatcher's cron decisions: when a schedule fires, catches up, skips or waits.

Pure, like the rest of the core: the time is an argument and every decision
is an event. A fire is `ScheduleFired` (which moves the schedule's
high-water mark) and the job's `Submitted`, decided together and so written
in the same group commit: after a crash either both are in the journal or
neither is, and the job's id and idempotency key derive from (schedule,
instant), so the same fire decided again is the same job.

Which instants fire:

- live: the schedule's timer wakes the Dispatcher at each instant; every
  instant in (high-water mark, now] fires, under the overlap rule.
- at recovery: instants that came due while the system was down follow the
  catch-up rule. Those more than `window` seconds old are missed in every
  mode; of the rest, "skip" fires none, "one" the most recent, "all" each
  in order. Dropped instants are recorded as missed (a metric counts them).
  The overlap rule applies to the first catch-up fire; the rest of "all"
  are submitted with it, in order.
- overlap, while the previous fire's job is not finished (queued, running
  or waiting to retry): "allow" fires anyway, "skip" skips the fire,
  "buffer_one" holds one fire back until that job ends (later ones skip).
- a manual trigger fires at once, whatever the overlap rule, and leaves the
  high-water mark alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actorq.core import cron
from actorq.core import effects as fx
from actorq.core.events import (
    ScheduleBuffered,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleSet,
    ScheduleSkipped,
    Submitted,
)
from actorq.core.schedules import ScheduleInfo, ScheduleRecord, ScheduleSpec
from actorq.errors import ScheduleNotFound

if TYPE_CHECKING:
    from actorq.core.dispatch import DispatchCore

TIMER = "cron"
# Counting the instants missed over a long outage stops here: a per-minute
# schedule down for a year would otherwise walk half a million instants.
MISSED_COUNT_LIMIT = 100_000


class CronDesk:
    """The cron half of a DispatchCore: its timers and the decisions above."""

    def __init__(self, core: DispatchCore) -> None:
        self.core = core
        self.armed: dict[str, float] = {}  # schedule -> the instant its timer is armed for

    # -- commands (from the facade, in the caller's thread) -------------------------

    def set(self, spec: ScheduleSpec, now: float) -> ScheduleInfo:
        record = self.core.state.schedules.get(spec.name)
        if record is None or record.spec != spec:
            self.core.persist(ScheduleSet(spec, now))
            record = self.core.state.schedules[spec.name]
        self._arm(record)
        return record.info()

    def pause(self, name: str, paused: bool, now: float) -> ScheduleInfo:
        record = self._get(name)
        if record.paused != paused:
            self.core.persist(SchedulePaused(name, paused, now))
        if not paused:
            self._arm(record)
        return record.info()

    def delete(self, name: str, now: float) -> None:
        self._get(name)
        self.core.persist(ScheduleDeleted(name, now))
        self.armed.pop(name, None)

    def trigger(self, name: str, now: float) -> str:
        """Fire now, outside the expression; returns the job id."""
        record = self._get(name)
        job_id = self._submit(record, now, now, manual=True)
        self.core.assign(now)
        return job_id

    def infos(self) -> list[ScheduleInfo]:
        return [r.info() for _, r in sorted(self.core.state.schedules.items())]

    def _get(self, name: str) -> ScheduleRecord:
        record = self.core.state.schedules.get(name)
        if record is None:
            raise ScheduleNotFound(name)
        return record

    # -- the Dispatcher's own moments ----------------------------------------------

    def recovered(self, now: float) -> None:
        """Decide what came due while the system was down, then arm every timer."""
        self.armed.clear()
        for record in list(self.core.state.schedules.values()):
            if not record.paused:
                self._catch_up(record, now)
                self._arm(record)
        self.settle(now)

    def timer(self, name: str, token: float, now: float) -> None:
        if self.armed.get(name) == token:
            del self.armed[name]
        record = self.core.state.schedules.get(name)
        if record is None or record.paused:
            return
        spec = record.spec
        for instant in list(cron.due(spec.cron, spec.tz, record.hwm, now, spec.fall_back)):
            self._fire(record, instant, now)
        self._arm(record)

    def settle(self, now: float) -> None:
        """Release fires held back for a job that has now finished."""
        state = self.core.state
        for name in sorted(state.buffered):
            record = state.schedules[name]
            if record.buffered is not None and not self._busy(record):
                self._submit(record, record.buffered, now, manual=False)

    # -- deciding ----------------------------------------------------------------------

    def _catch_up(self, record: ScheduleRecord, now: float) -> None:
        spec = record.spec
        missed: list[float] = []
        count = 0
        recent: list[float] = []
        horizon = now - spec.window
        for instant in cron.due(spec.cron, spec.tz, record.hwm, now, spec.fall_back):
            if instant < horizon:
                count += 1
                missed = [instant]
                if count >= MISSED_COUNT_LIMIT:
                    break
            else:
                recent.append(instant)
        if spec.catch_up == "skip":
            fire: list[float] = []
        elif spec.catch_up == "one":
            fire = recent[-1:]
        else:
            fire = recent
        dropped = [i for i in recent if i not in fire]
        count += len(dropped)
        upto = max([*missed, *dropped], default=None)
        if upto is not None:
            self.core.persist(ScheduleSkipped(spec.name, count, upto, "missed", now))
        # The overlap rule is asked for the first catch-up fire only: "all" asks for
        # every missed fire, which would otherwise wait on one another's jobs.
        for i, instant in enumerate(fire):
            if i == 0:
                self._fire(record, instant, now)
            else:
                self._submit(record, instant, now, manual=False)

    def _fire(self, record: ScheduleRecord, instant: float, now: float) -> None:
        name = record.spec.name
        if self._busy(record):
            overlap = record.spec.overlap
            if overlap == "skip" or (overlap == "buffer_one" and record.buffered is not None):
                self.core.persist(ScheduleSkipped(name, 1, instant, "overlap", now))
                return
            if overlap == "buffer_one":
                self.core.persist(ScheduleBuffered(name, instant, now))
                return
        self._submit(record, instant, now, manual=False)

    def _busy(self, record: ScheduleRecord) -> bool:
        if record.last_job is None:
            return False
        job = self.core.state.jobs.get(record.last_job)
        return job is not None and not job.status.terminal

    def _submit(self, record: ScheduleRecord, instant: float, now: float, *, manual: bool) -> str:
        # Fires are not held to max_pending: their number is bounded by the
        # schedules and the catch-up window, and refusing one would lose it.
        job = record.spec.job(instant, manual, now)
        core = self.core
        existing = core.state.idempotency.get(job.idempotency_key or "")
        core.persist(ScheduleFired(record.spec.name, instant, existing or job.id, manual, now))
        if existing is None:
            core.persist(Submitted(job, now, None))
        return existing or job.id

    def _arm(self, record: ScheduleRecord) -> None:
        if record.paused:
            return
        spec = record.spec
        when = cron.next_fire(spec.cron, spec.tz, record.hwm, spec.fall_back)
        if when is None or self.armed.get(spec.name) == when:
            return
        self.armed[spec.name] = when
        self.core.emit(fx.Arm([(when, TIMER, spec.name, when)]))
