"""The protocol between actorq's actors: frozen, slotted dataclasses.

Commands are imperative (`Submit`, `Assign`), facts past tense (`Finished`).
Messages carry ids, plain data and reply slots, never other live objects. A
`reply` is a future the sender waits on (anything with `set` and
`set_exception`, such as a pykka future); the Dispatcher and DeadLetter set
it only after the events the message caused are in the journal (group
commit), so an answer always means "durable".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actorq.core.job import JobInfo, JobSpec


class Reply(Protocol):
    def set(self, value: Any = None) -> None: ...

    def set_exception(self, exc_info: Any = None) -> None: ...


# -- facade -> Dispatcher ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Submit:
    """Accept jobs, all or none; answers [(job id, existing?)] in order.

    Each item is (spec, run_at): run_at is None for a job to run now.
    """

    jobs: list[tuple[JobSpec, float | None]]
    reply: Reply


@dataclass(frozen=True, slots=True)
class Revive:
    """From the dead letters: bring back the job that died at `died_at`, attempts reset.

    Answers its id (if `reply`) and confirms with `Revived` once durable. Only
    that death is revived: a repeated Revive for a job that has run again
    since changes nothing.
    """

    job: JobSpec
    died_at: float | None
    reply: Reply | None = None


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
    """Run these jobs in order: tuples (job id, attempt, task, payload).

    `payload` is the job's msgpack-encoded [args, kwargs]; `headers` maps the
    id of a job submitted with headers (trace context) to them.
    """

    epoch: int
    jobs: Sequence[tuple[str, int, str, bytes]]
    headers: Mapping[str, Mapping[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class Recalled:
    """These jobs were taken back from a worker before they started."""

    worker: str
    ids: list[str]


@dataclass(frozen=True, slots=True)
class NodeJoined:
    """A worker node of the cluster is up with these workers (names ``node/worker-i``)."""

    node: str
    workers: list[str]


@dataclass(frozen=True, slots=True)
class NodeLost:
    """A worker node stopped heart-beating past its lease: what it held is lost."""

    node: str


# (job id, attempt, ok, msgpack-encoded value, error text, error lineage, seconds it ran)
Result = tuple[str, int, bool, bytes | None, str | None, tuple[str, ...], float]


@dataclass(frozen=True, slots=True)
class Finished:
    """Outcomes, in the order the jobs ran, with the time each took to run.

    `tracebacks` maps the id of a job that raised to its (bounded) traceback.
    """

    worker: str
    incarnation: int
    epoch: int
    results: list[Result]
    tracebacks: Mapping[str, str] | None = None


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
    """Keep this dead job; confirmed with DeadLettered."""

    job: JobInfo


@dataclass(frozen=True, slots=True)
class DeadLettered:
    job_id: str


@dataclass(frozen=True, slots=True)
class ListDead:
    """Answers the dead jobs, oldest first: all, or `limit` after the one with id `after`."""

    reply: Reply
    limit: int | None = None
    after: str | None = None


@dataclass(frozen=True, slots=True)
class ReviveDead:
    """Ask the dead letters to revive a job: answers its id, or None if not dead-lettered."""

    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class Revived:
    """To the dead letters: the job that died at `died_at` is back with the Dispatcher."""

    job_id: str
    died_at: float | None


@dataclass(frozen=True, slots=True)
class GetDead:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class PurgeDead:
    job_id: str | None
    reply: Reply
