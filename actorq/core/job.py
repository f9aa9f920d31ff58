"""The job model: one frozen `JobSpec` for what was submitted, and the views built on it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgpack


class JobStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for its delay
    QUEUED = "queued"  # ready to run
    RUNNING = "running"  # assigned to a worker
    RETRYING = "retrying"  # failed, waiting for its backoff
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # gave up; kept by the dead letters
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})

DELIVERIES = ("at_least_once", "at_most_once")


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except TypeError:
        # A map keyed by tuples comes back keyed by lists, which Python cannot
        # hash: read it again turning such keys back into tuples (rare, so
        # the common path pays nothing).
        return msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=_pairs)


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_hashable(key): value for key, value in pairs}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What a submission asked for; never changes for the life of the job.

    `payload` is the msgpack encoding of ``[args, kwargs]``, made once in the
    submitting thread: the journal stores these bytes as they are, and only
    the worker that runs the job decodes them. `headers` is a small map of
    strings that travels with the job to its worker (middleware puts a trace
    context there); it is stored only when present.
    """

    id: str
    task: str
    payload: bytes
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None
    policy: dict[str, Any] | None = None
    delivery: str = "at_least_once"
    idempotency_key: str | None = None
    headers: dict[str, str] | None = None

    @property
    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        args, kwargs = unpack(self.payload)
        return args, kwargs

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "timeout": self.timeout,
            "policy": self.policy,
            "delivery": self.delivery,
            "idempotency_key": self.idempotency_key,
            **({"headers": self.headers} if self.headers else {}),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**data)


# The fields of one attempt's record, in the order the state stores them.
ATTEMPT_FIELDS = (
    "attempt",
    "started_at",
    "finished_at",
    "worker",
    "node",
    "outcome",
    "error",
    "traceback",
    "retry_delay",
    "ran",
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a job, from the journal.

    `outcome`: succeeded, failed, cancelled, or interrupted (its worker or the
    system went down; the job ran again). `retry_delay` is the backoff drawn
    after a failure (None: no retry followed). `ran` is the handler's run time
    as the worker measured it; `started_at` and `finished_at` are the
    Dispatcher's clock at assignment and at the outcome.
    """

    attempt: int
    started_at: float | None
    finished_at: float
    worker: str | None
    node: str | None
    outcome: str
    error: str | None = None
    traceback: str | None = None
    retry_delay: float | None = None
    ran: float | None = None

    @classmethod
    def from_values(cls, values: list[Any]) -> Attempt:
        return cls(*values)

    def to_values(self) -> list[Any]:
        return [getattr(self, name) for name in ATTEMPT_FIELDS]

    def to_dict(self) -> dict[str, Any]:
        return dict(zip(ATTEMPT_FIELDS, self.to_values(), strict=True))


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A point-in-time copy of a job's record: its spec and how it is doing."""

    spec: JobSpec
    status: JobStatus
    attempts: int = 0
    result: Any = None
    error: str | None = None
    created_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    traceback: str | None = None  # the last failure's, bounded in size
    history: tuple[Attempt, ...] = ()  # the latest attempts, oldest first

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def queue(self) -> str:
        return self.spec.queue

    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def idempotency_key(self) -> str | None:
        return self.spec.idempotency_key

    @property
    def args(self) -> list[Any]:
        return self.spec.arguments[0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.spec.arguments[1]

    def to_dict(self) -> dict[str, Any]:
        """The flat, JSON-friendly view (the HTTP API and the CLI show this)."""
        args, kwargs = self.spec.arguments
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status.value,
            "attempts": self.attempts,
            "queue": self.queue,
            "priority": self.priority,
            "args": args,
            "kwargs": kwargs,
            "result": self.result,
            "error": self.error,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "run_at": self.run_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "traceback": self.traceback,
            "history": [a.to_dict() for a in self.history],
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_wire(),
            "status": self.status.value,
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "run_at": self.run_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "traceback": self.traceback,
            "history": [a.to_values() for a in self.history],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> JobInfo:
        fields = dict(data)
        fields["spec"] = JobSpec.from_wire(fields["spec"])
        fields["status"] = JobStatus(fields["status"])
        fields["history"] = tuple(Attempt.from_values(a) for a in fields.get("history", ()))
        return cls(**fields)
