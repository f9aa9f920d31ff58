"""The Dispatcher's events: facts, in the past tense, applied by `DispatcherState.apply`.

Every decision that involves chance or the clock (a retry's backoff, the
time) is taken by the actor and recorded in the event, so that applying
events is deterministic and replay rebuilds exactly the same state.
Fields are plain msgpack types so any journal can store them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actorq.core.job import JobSpec, pack
from actorq.core.schedules import ScheduleSpec
from actorq.core.wire import event_type, upcaster


@event_type("job.submitted", version=2)
@dataclass(frozen=True, slots=True)
class Submitted:
    """A job was accepted (or a dead job was revived with its attempts reset)."""

    spec: JobSpec
    at: float
    run_at: float | None

    def to_wire(self) -> dict[str, Any]:
        return {"spec": self.spec.to_wire(), "at": self.at, "run_at": self.run_at}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Submitted:
        return cls(JobSpec.from_wire(data["spec"]), data["at"], data["run_at"])


@upcaster("job.submitted", 1)
def _submitted_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept the job's fields flat, with args and kwargs decoded."""
    spec = {
        "id": data["id"],
        "task": data["task"],
        "payload": pack([data["args"], data["kwargs"]]),
        "queue": data["queue"],
        "priority": data["priority"],
        "timeout": data["timeout"],
        "policy": data["policy"],
        "delivery": data["delivery"],
        "idempotency_key": data["idempotency_key"],
    }
    return {"spec": spec, "at": data["at"], "run_at": data["run_at"]}


@event_type("job.due")
@dataclass(frozen=True, slots=True)
class BecameDue:
    ids: list[str]
    at: float


@event_type("job.started", version=2)
@dataclass(frozen=True, slots=True)
class Started:
    """Jobs were handed to `worker` (on `node`, when the system names its node)."""

    worker: str
    ids: list[str]
    at: float
    node: str | None = None


@upcaster("job.started", 1)
def _started_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 did not record the node."""
    return {**data, "node": None}


@event_type("job.succeeded", version=3)
@dataclass(frozen=True, slots=True)
class Succeeded:
    """`result` is the handler's return value, msgpack-encoded once by the worker.

    `ran`: how long the handler ran, as its worker measured it.
    """

    id: str
    attempt: int
    result: bytes
    at: float
    ran: float | None = None


@upcaster("job.succeeded", 1)
def _succeeded_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 stored the result decoded."""
    return {**data, "result": pack(data["result"])}


@upcaster("job.succeeded", 2)
def _succeeded_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 did not record the run time."""
    return {**data, "ran": None}


@event_type("job.failed", version=2)
@dataclass(frozen=True, slots=True)
class Failed:
    """An attempt failed; `retry_at` is None when the policy gave up (the job is dead).

    `traceback` is the handler's, bounded by the worker; `ran` how long it ran.
    """

    id: str
    attempt: int
    error: str
    at: float
    retry_at: float | None
    delay: float | None
    traceback: str | None = None
    ran: float | None = None


@upcaster("job.failed", 1)
def _failed_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept neither the traceback nor the run time."""
    return {**data, "traceback": None, "ran": None}


@event_type("job.requeued")
@dataclass(frozen=True, slots=True)
class Requeued:
    """Running jobs went back to the queue without a failure being counted.

    `started`: the attempt did begin (a crash re-run under at-least-once keeps
    its attempt number); otherwise the job never began and the attempt is undone.
    """

    ids: list[str]
    started: bool
    at: float


@event_type("job.cancel_requested")
@dataclass(frozen=True, slots=True)
class CancelRequested:
    id: str
    at: float


@event_type("job.cancelled")
@dataclass(frozen=True, slots=True)
class Cancelled:
    id: str
    at: float


@event_type("job.handed_off")
@dataclass(frozen=True, slots=True)
class HandedOff:
    """The DeadLetter actor confirmed it holds this dead job."""

    id: str


@event_type("job.expired")
@dataclass(frozen=True, slots=True)
class Expired:
    """Finished jobs past their retention were forgotten."""

    ids: list[str]


# -- recurring schedules ----------------------------------------------------------


@event_type("schedule.set")
@dataclass(frozen=True, slots=True)
class ScheduleSet:
    """A schedule was created, or changed (a change keeps its high-water mark)."""

    spec: ScheduleSpec
    at: float

    def to_wire(self) -> dict[str, Any]:
        return {"spec": self.spec.to_wire(), "at": self.at}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ScheduleSet:
        return cls(ScheduleSpec.from_wire(data["spec"]), data["at"])


@event_type("schedule.paused")
@dataclass(frozen=True, slots=True)
class SchedulePaused:
    """Paused, or resumed (`paused` False): fires while paused are not caught up."""

    name: str
    paused: bool
    at: float


@event_type("schedule.deleted")
@dataclass(frozen=True, slots=True)
class ScheduleDeleted:
    name: str
    at: float


@event_type("schedule.fired")
@dataclass(frozen=True, slots=True)
class ScheduleFired:
    """A fire was decided; the job's Submitted event is in the same commit.

    `instant` is the cron instant (UTC seconds) and becomes the high-water
    mark; a manual trigger (`manual`) leaves the mark where it was.
    """

    name: str
    instant: float
    job_id: str
    manual: bool
    at: float


@event_type("schedule.skipped")
@dataclass(frozen=True, slots=True)
class ScheduleSkipped:
    """`count` fire instants up to `upto` passed without a job.

    `reason` is "missed" (they came due while the system was down and the
    catch-up rule dropped them) or "overlap" (the previous fire's job was
    still unfinished).
    """

    name: str
    count: int
    upto: float
    reason: str
    at: float


@event_type("schedule.buffered")
@dataclass(frozen=True, slots=True)
class ScheduleBuffered:
    """A fire waits for the previous fire's job to finish (overlap="buffer_one")."""

    name: str
    instant: float
    at: float
