"""The invariant "each cron instant fired once", judged from the Dispatcher's commits.

The checker follows every schedule through its durable events only (what a
commit wrote), and walks the schedule's expression on its own cursor:

- no instant is fired twice (a manual trigger is not an instant), and each
  instant fired is one of the expression's;
- every instant up to the schedule's high-water mark is accounted for:
  fired, held back (overlap "buffer_one"), or counted as skipped (overlap)
  or missed (catch-up) by the schedule's counters, so none vanishes
  silently;
- none is left behind: while the Dispatcher has been up for `grace`
  seconds and the schedule is not paused, no instant older than `grace`
  is still undecided;
- after each recovery the recovered schedule agrees with what was committed.

Pausing, resuming and changing a schedule move its high-water mark on by
rule; the cursor moves with it, counting nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from actorq.core import cron
from actorq.core.events import (
    ScheduleBuffered,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleSet,
    ScheduleSkipped,
)
from actorq.core.schedules import ScheduleRecord, ScheduleSpec

NAME = "cron_fired_once"


class _Watch:
    """One schedule as its committed events tell it."""

    def __init__(self, spec: ScheduleSpec, hwm: float) -> None:
        self.fired: set[float] = set()
        self.manual = 0
        self.missed = 0
        self.skipped = 0
        self.buffered: float | None = None
        self.paused = False
        self.rebase(spec, hwm)

    def rebase(self, spec: ScheduleSpec, hwm: float) -> None:
        """The mark moved on by rule: instants up to it are owed nothing."""
        self.spec = spec
        self.hwm = hwm
        self._fires: Iterator[float] = cron.fires(spec.cron, spec.tz, hwm, spec.fall_back)
        self.next: float | None = next(self._fires, None)
        self.instants = self.accounted

    @property
    def accounted(self) -> int:
        return len(self.fired) + self.missed + self.skipped + (self.buffered is not None)

    def advance(self, hwm: float) -> None:
        """Count the expression's instants up to the new high-water mark."""
        self.hwm = max(self.hwm, hwm)
        while self.next is not None and self.next <= self.hwm:
            self.instants += 1
            self.next = next(self._fires, None)


class CronCheck:
    def __init__(self, violate: Any, grace: float) -> None:
        self.violate = violate  # (detail) -> raises
        self.grace = grace
        self.watches: dict[str, _Watch] = {}
        self.checks = 0
        self.earliest: float | None = None  # the oldest undecided instant of a live schedule

    def committed(self, event: Any) -> None:
        kind = type(event)
        if kind is ScheduleSet:
            watch = self.watches.get(event.spec.name)
            if watch is None:
                self.watches[event.spec.name] = _Watch(event.spec, event.at)
            else:
                watch.rebase(event.spec, max(watch.hwm, event.at))
        elif kind is SchedulePaused:
            watch = self.watches.get(event.name)
            if watch is not None:
                watch.paused = event.paused
                if not event.paused:
                    watch.rebase(watch.spec, max(watch.hwm, event.at))
        elif kind is ScheduleDeleted:
            self.watches.pop(event.name, None)
        elif kind is ScheduleFired:
            watch = self.watches.get(event.name)
            if watch is None:
                return
            if event.manual:
                watch.manual += 1
            else:
                self._fired(watch, event.name, event.instant)
        elif kind is ScheduleSkipped:
            watch = self.watches.get(event.name)
            if watch is None:
                return
            if event.reason == "missed":
                watch.missed += event.count
            else:
                watch.skipped += event.count
            self._balance(watch, event.name, event.upto)
        elif kind is ScheduleBuffered:
            watch = self.watches.get(event.name)
            if watch is not None:
                watch.buffered = event.instant
                self._balance(watch, event.name, event.instant)
        else:
            return
        self._refresh()

    def _fired(self, watch: _Watch, name: str, instant: float) -> None:
        if instant in watch.fired:
            self.violate(f"schedule {name!r} fired instant {_iso(instant, watch)} twice")
        if watch.buffered == instant:
            watch.buffered = None  # the held-back fire goes out: it was counted already
            watch.fired.add(instant)
            return
        if not _is_instant(watch.spec, instant):
            self.violate(f"schedule {name!r} fired {_iso(instant, watch)}, not one of its instants")
        watch.fired.add(instant)
        self._balance(watch, name, instant)

    def _balance(self, watch: _Watch, name: str, hwm: float) -> None:
        self.checks += 1
        watch.advance(hwm)
        if watch.instants != watch.accounted:
            self.violate(
                f"schedule {name!r} has {watch.instants} instants up to {_iso(watch.hwm, watch)}"
                f" but accounts for {watch.accounted}: {len(watch.fired)} fired,"
                f" {watch.skipped} skipped, {watch.missed} missed,"
                f" {int(watch.buffered is not None)} held back"
            )

    def _refresh(self) -> None:
        pending = [w.next for w in self.watches.values() if not w.paused and w.next is not None]
        self.earliest = min(pending) if pending else None

    def step(self, wall: float, up_since: float | None) -> None:
        """After a step: no instant of a live schedule left undecided past the grace."""
        earliest = self.earliest
        if earliest is None or up_since is None or wall - earliest <= self.grace:
            return
        if wall - up_since <= self.grace:
            return  # the Dispatcher came back only now; its catch-up is under way
        self.checks += 1
        for name, watch in sorted(self.watches.items()):
            if not watch.paused and watch.next is not None and wall - watch.next > self.grace:
                self.violate(
                    f"schedule {name!r} left instant {_iso(watch.next, watch)} undecided"
                    f" {wall - watch.next:.0f}s after it came due"
                )

    def recovered(self, records: dict[str, ScheduleRecord]) -> None:
        """The recovered schedules must be what the commits said."""
        self.checks += 1
        for name, watch in sorted(self.watches.items()):
            record = records.get(name)
            if record is None:
                self.violate(f"schedule {name!r} is gone after the Dispatcher recovered")
                return
            if record.hwm != watch.hwm or record.fired != len(watch.fired) + watch.manual:
                self.violate(
                    f"schedule {name!r} recovered at mark {record.hwm} with {record.fired}"
                    f" fires; its commits say mark {watch.hwm} with"
                    f" {len(watch.fired) + watch.manual}"
                )


def _is_instant(spec: ScheduleSpec, instant: float) -> bool:
    return next(cron.fires(spec.cron, spec.tz, instant - 1e-3, spec.fall_back), None) == instant


def _iso(instant: float, watch: _Watch) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(instant, cron.zone(watch.spec.tz)).isoformat()
