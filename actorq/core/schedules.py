"""Recurring schedules as data: what a schedule runs, and how it stands.

A `ScheduleSpec` is the definition (cron expression, zone, the job it
submits, the catch-up and overlap rules); a `ScheduleRecord` is the
Dispatcher's mutable view of one schedule, changed only by the schedule
events through `DispatcherState.apply`. Its high-water mark `hwm` is the
last fire instant (UTC seconds) that has been decided: fired, buffered,
skipped or missed. Nothing at or before it fires again.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from actorq.core.cron import FALL_BACKS, FallBack, upcoming
from actorq.core.cron import check as check_cron
from actorq.core.job import JobSpec, unpack
from actorq.errors import InvalidSchedule

CatchUp = Literal["skip", "one", "all"]
Overlap = Literal["allow", "skip", "buffer_one"]
CATCH_UPS: tuple[CatchUp, ...] = ("skip", "one", "all")
OVERLAPS: tuple[Overlap, ...] = ("allow", "skip", "buffer_one")

# Defaults, stated in the README: a fire missed while the system was down runs
# once when it comes back, if it is at most a day old (a nightly job missed
# overnight still runs); a fire whose previous job has not finished is skipped.
DEFAULT_TZ = "UTC"
DEFAULT_CATCH_UP: CatchUp = "one"
DEFAULT_WINDOW = 86400.0
DEFAULT_OVERLAP: Overlap = "skip"

# Names appear in URLs and job ids: a conservative alphabet.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}")


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    name: str
    cron: str
    tz: str
    task: str
    payload: bytes  # msgpack [args, kwargs], encoded once by the facade
    queue: str
    priority: int
    timeout: float | None
    policy: dict[str, Any] | None
    delivery: str
    catch_up: CatchUp = DEFAULT_CATCH_UP
    window: float = DEFAULT_WINDOW
    overlap: Overlap = DEFAULT_OVERLAP
    fall_back: FallBack = "once"

    def check(self) -> None:
        """Raise a named InvalidSchedule unless every option is in its range."""
        check_name(self.name)
        check_cron(self.cron, self.tz)
        if self.catch_up not in CATCH_UPS:
            raise InvalidSchedule(f"catch_up must be one of {CATCH_UPS}, not {self.catch_up!r}")
        if self.overlap not in OVERLAPS:
            raise InvalidSchedule(f"overlap must be one of {OVERLAPS}, not {self.overlap!r}")
        if self.fall_back not in FALL_BACKS:
            raise InvalidSchedule(f"fall_back must be one of {FALL_BACKS}, not {self.fall_back!r}")
        window = self.window
        if (
            not isinstance(window, int | float)
            or isinstance(window, bool)
            or not math.isfinite(window)
            or window <= 0
        ):
            raise InvalidSchedule(f"window must be a positive number of seconds, not {window!r}")

    def job(self, instant: float, manual: bool, now: float) -> JobSpec:
        """The job of one fire: its id and idempotency key derive from (schedule, instant)."""
        if manual:
            key = f"cron:{self.name}:manual:{round(now * 1000)}"
        else:
            key = f"cron:{self.name}:{round(instant)}"
        return JobSpec(
            id=key,
            task=self.task,
            payload=self.payload,
            queue=self.queue,
            priority=self.priority,
            timeout=self.timeout,
            policy=self.policy,
            delivery=self.delivery,
            idempotency_key=key,
        )

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ScheduleSpec:
        return cls(**data)


def check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidSchedule(
            f"a schedule name is 1-200 letters, digits and _.:@- starting with a letter"
            f" or digit, not {name!r}"
        )


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A point-in-time copy of a schedule; `next_fires` are in the schedule's zone."""

    name: str
    cron: str
    tz: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    catch_up: CatchUp
    window: float
    overlap: Overlap
    fall_back: FallBack
    paused: bool
    created_at: float
    high_water_mark: float  # the last instant decided: fired, buffered, skipped or missed
    last_job: str | None
    fired: int
    missed: int
    skipped: int
    buffered: float | None
    next_fires: list[datetime]


class ScheduleRecord:
    __slots__ = (
        "buffered",
        "created_at",
        "fired",
        "hwm",
        "last_job",
        "missed",
        "paused",
        "skipped",
        "spec",
    )

    def __init__(self, spec: ScheduleSpec, at: float) -> None:
        self.spec = spec
        self.created_at = at
        self.hwm = at  # a new schedule never fires for instants before it existed
        self.paused = False
        self.last_job: str | None = None
        self.buffered: float | None = None
        self.fired = 0
        self.missed = 0
        self.skipped = 0

    def info(self, count: int = 5) -> ScheduleInfo:
        spec = self.spec
        args, kwargs = unpack(spec.payload)
        next_fires = [] if self.paused else upcoming(spec.cron, spec.tz, self.hwm, count)
        return ScheduleInfo(
            name=spec.name,
            cron=spec.cron,
            tz=spec.tz,
            task=spec.task,
            args=list(args),
            kwargs=dict(kwargs),
            queue=spec.queue,
            catch_up=spec.catch_up,
            window=spec.window,
            overlap=spec.overlap,
            fall_back=spec.fall_back,
            paused=self.paused,
            created_at=self.created_at,
            high_water_mark=self.hwm,
            last_job=self.last_job,
            fired=self.fired,
            missed=self.missed,
            skipped=self.skipped,
            buffered=self.buffered,
            next_fires=next_fires,
        )

    def to_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in self.__slots__}
        row["spec"] = self.spec.to_wire()
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleRecord:
        record = cls.__new__(cls)
        for name in cls.__slots__:
            setattr(record, name, row[name])
        record.spec = ScheduleSpec.from_wire(row["spec"])
        return record
