"""What a user sees of a job: its status, a snapshot of its record, a handle."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actorq.core.job import JobInfo, JobSpec, JobStatus

__all__ = ["JobHandle", "JobInfo", "JobSpec", "JobStatus"]

if TYPE_CHECKING:
    from actorq.system import ActorSystem


class JobHandle:
    """A submitted job: its id, and ways to ask how it is doing."""

    __slots__ = ("_system", "existing", "id", "ticket")

    def __init__(
        self,
        system: ActorSystem,
        job_id: str,
        existing: bool = False,
        ticket: tuple[Any, int] | None = None,
    ) -> None:
        self._system = system
        self.id = job_id
        self.existing = existing  # True when an idempotency key matched an earlier job
        self.ticket = ticket  # (dispatcher, event sequence) of its submission

    def durable(self, timeout: float | None = None) -> bool:
        """Wait until the submission is in the journal; False if `timeout` ran out.

        Raises JournalUnavailable if the Dispatcher restarted before it was,
        which means the job was lost (only "accepted" submissions can be).
        """
        if self.ticket is None:
            return True
        dispatcher, ticket = self.ticket
        return self._system._wait_durable(dispatcher, ticket, timeout)

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
