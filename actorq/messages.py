"""The protocol between actorq's actors: frozen, slotted dataclasses.

Commands are imperative (`Submit`, `Assign`), facts past tense (`Finished`).
Messages carry ids, plain data, actor addresses and reply futures, never
other live objects. A `reply` is a pykka future the sender waits on; the
Dispatcher and DeadLetter set it only after the events the message caused are
in the journal (group commit), so an answer always means "durable".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pykka

Reply = pykka.Future[Any]


@dataclass(frozen=True, slots=True)
class NewJob:
    """One validated submission, arguments already normalised through msgpack."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    run_at: float | None
    timeout: float | None
    policy: dict[str, Any] | None
    delivery: str
    idempotency_key: str | None


# -- facade -> Dispatcher ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Accept jobs, all or none; answers [(job id, existing?)] in order."""

    jobs: list[NewJob]
    reply: Reply


@dataclass(frozen=True, slots=True)
class Revive:
    """Bring a dead job back, attempts reset; answers its id."""

    job: NewJob
    reply: Reply


@dataclass(frozen=True, slots=True)
class Cancel:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class GetJob:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class GetStats:
    reply: Reply


@dataclass(frozen=True, slots=True)
class Pause:
    """Stop (paused=True) or resume handing jobs to workers; running jobs go on."""

    paused: bool
    reply: Reply


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop assigning work; answer once no job is running (graceful stop)."""

    reply: Reply


# -- Dispatcher <-> Worker -------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    """A worker incarnation started: what its predecessor held is lost."""

    worker: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class Reset:
    """From a Dispatcher incarnation (`epoch`) to a worker: announce your credits."""

    epoch: int


@dataclass(frozen=True, slots=True)
class Ready:
    worker: str
    incarnation: int
    epoch: int
    credits: int


@dataclass(frozen=True, slots=True)
class Assign:
    """Run these jobs in order: tuples (job id, attempt, task, args, kwargs)."""

    epoch: int
    jobs: list[tuple[str, int, str, list[Any], dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Finished:
    """Outcomes, in the order the jobs ran; each returns one credit.

    results: tuples (job id, attempt, ok, value, error text, error lineage).
    """

    worker: str
    incarnation: int
    epoch: int
    results: list[tuple[str, int, bool, Any, str | None, tuple[str, ...]]]


# -- Scheduler -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """Arm timers: tuples (when, kind, job id, token). kind: due, timeout, sweep."""

    timers: list[tuple[float, str, str, Any]]


@dataclass(frozen=True, slots=True)
class TimersFired:
    timers: list[tuple[float, str, str, Any]]


# -- Dispatcher <-> DeadLetter ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bury:
    """Keep this dead job (a JobInfo as a dict); confirmed with DeadLettered."""

    job: dict[str, Any]
    policy: dict[str, Any] | None
    delivery: str
    timeout: float | None


@dataclass(frozen=True, slots=True)
class DeadLettered:
    job_id: str


@dataclass(frozen=True, slots=True)
class ListDead:
    reply: Reply


@dataclass(frozen=True, slots=True)
class TakeDead:
    """Remove a dead job after it was revived; answers its entry or None.

    Only the entry that died at `finished_at` is removed: the revived job may
    already have died again and been buried anew.
    """

    job_id: str
    finished_at: float | None
    reply: Reply


@dataclass(frozen=True, slots=True)
class GetDead:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class PurgeDead:
    job_id: str | None
    reply: Reply
