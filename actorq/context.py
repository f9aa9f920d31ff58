"""`current_job()`: what a running handler knows about its own job."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from actorq.actors.board import ResultBoard


@dataclass(frozen=True, slots=True)
class JobContext:
    id: str
    attempt: int
    task: str
    _board: ResultBoard

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or timed out; a handler may stop early."""
        return self.id in self._board.cancelled


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "actorq_current_job", default=None
)


def current_job() -> JobContext:
    """The job the calling handler runs for. Raises LookupError outside a job."""
    ctx = _current.get()
    if ctx is None:
        raise LookupError("current_job() is only available inside a running job")
    return ctx
