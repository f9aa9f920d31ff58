"""What the decision core asks its shell to do, as data.

Each decision returns the events to persist and two lists of effects:
`now` effects may run while the events are still being written (telling an
at-least-once job to a worker, publishing an outcome, arming a timer: if
the events are lost in a crash, the work is simply repeated); `durable`
effects run only once the events are in the journal (answers to callers,
at-most-once starts, hand-offs to the dead letters). The shell runs both
lists in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actorq.core.job import JobStatus
from actorq.core.messages import Reply

# (status, msgpack-encoded result or None, error text or None)
Outcome = tuple[JobStatus, bytes | None, str | None]
# (when, kind, job id, token): kind is "due", "timeout", "sweep", "recall",
# or "cron" (then the id is the schedule's name and the token its instant)
Timer = tuple[float, str, str, Any]


@dataclass(frozen=True, slots=True)
class Tell:
    """Send `message` to the actor named `to` (a worker, "scheduler", "deadletter")."""

    to: str
    message: Any


@dataclass(frozen=True, slots=True)
class Arm:
    timers: list[Timer]


@dataclass(frozen=True, slots=True)
class Publish:
    """Terminal outcomes, for callers waiting on results."""

    outcomes: list[tuple[str, Outcome]]


@dataclass(frozen=True, slots=True)
class Forget:
    """These jobs' outcomes are gone (expired, or revived to run again)."""

    ids: list[str]


@dataclass(frozen=True, slots=True)
class FlagCancelled:
    """A running job should stop: its handler sees `current_job().cancelled`."""

    job_id: str


@dataclass(frozen=True, slots=True)
class ReplaceWorker:
    """The worker is hung on a timed-out job: its supervisor replaces it."""

    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class Recall:
    """Take back these jobs from the worker if it has not started them."""

    worker: str
    ids: list[str]


@dataclass(frozen=True, slots=True)
class Answer:
    to: Reply
    value: Any


@dataclass(frozen=True, slots=True)
class Refuse:
    to: Reply
    error: BaseException


Effect = Tell | Arm | Publish | Forget | FlagCancelled | ReplaceWorker | Recall | Answer | Refuse


@dataclass(slots=True)
class Decision:
    events: list[Any] = field(default_factory=list)
    now: list[Effect] = field(default_factory=list)
    durable: list[Effect] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.now or self.durable)
