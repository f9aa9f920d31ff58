"""What a user sees of a job: its status, a snapshot of its record, a handle."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actorq.system import ActorSystem


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


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A point-in-time copy of a job's record."""

    id: str
    task: str
    status: JobStatus
    attempts: int
    queue: str
    priority: int
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status.value,
            "attempts": self.attempts,
            "queue": self.queue,
            "priority": self.priority,
            "args": self.args,
            "kwargs": self.kwargs,
            "result": self.result,
            "error": self.error,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at,
            "run_at": self.run_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobHandle:
    """A submitted job: its id, and ways to ask how it is doing."""

    __slots__ = ("_system", "existing", "id")

    def __init__(self, system: ActorSystem, job_id: str, existing: bool = False) -> None:
        self._system = system
        self.id = job_id
        self.existing = existing  # True when an idempotency key matched an earlier job

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def status(self) -> JobStatus:
        return self._system.job(self.id).status

    def info(self) -> JobInfo:
        return self._system.job(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """The job's return value once it succeeded.

        Raises JobFailed (dead, with the error text), JobCancelled, or
        TimeoutError if the job has not finished within `timeout` seconds.
        """
        return self._system.result(self.id, timeout)

    def cancel(self) -> bool:
        return self._system.cancel(self.id)
