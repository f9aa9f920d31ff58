"""actorq's exceptions, one rooted tree named by cause.

    ActorqError
    ├── SubmitError                 a submission was refused; nothing changed
    │   ├── UnknownTask             no task registered under that name
    │   ├── UnknownQueue            the queue was not declared
    │   ├── InvalidSubmission       negative delay, priority out of range, ...
    │   ├── NotSerializable         an argument msgpack cannot encode
    │   ├── PayloadTooLarge         encoded arguments over the size limit
    │   ├── IdempotencyConflict     a known idempotency key with another task or arguments
    │   └── Backpressure            too many unfinished jobs; try again later
    ├── JobError
    │   ├── JobFailed               the job ended dead; carries the error text
    │   ├── JobCancelled            the job was cancelled
    │   └── JobNotFound             no such job (never existed, or expired)
    ├── ScheduleError
    │   ├── InvalidSchedule         a bad option of a recurring schedule
    │   │   ├── InvalidCronExpression   not five cron fields, or never fires
    │   │   └── UnknownTimeZone     not an IANA zone name
    │   └── ScheduleNotFound        no schedule by that name
    ├── SystemNotRunning            the system is stopped, stopping or failed
    ├── InvalidLimit                a rate limit or retry budget out of its range
    ├── TaskNotImportable           a process pool's children could not find the task
    ├── WorkerProcessDied           a pool's child process died running a job
    ├── SupervisionError
    │   └── Escalated               a supervisor gave up past its intensity
    └── JournalError
        ├── JournalCorrupted        a record failed its checksum mid-journal
        ├── UnknownEventVersion     an event's schema version is not known
        ├── SequenceConflict        an append did not follow the last sequence
        ├── JournalFenced           another owner holds this journal
        ├── JournalUnavailable      the backend cannot be reached
        └── InvalidJournalURL       a journal URL with an unknown scheme or malformed

`UnknownTask`, `InvalidSubmission`, `UnknownQueue`, `NotSerializable`,
`InvalidLimit` and `InvalidJournalURL` also derive from the builtin they refine (`LookupError`,
`TaskNotImportable` and `InvalidJournalURL` also derive from the builtin they refine (`LookupError`,
`ValueError`, `TypeError`) so that callers catching the builtin keep working.
"""

from __future__ import annotations


class ActorqError(Exception):
    """Base of every exception actorq raises on purpose."""


class SubmitError(ActorqError):
    """A submission was refused before anything changed."""


class UnknownTask(SubmitError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no task registered under the name {name!r}")
        self.name = name


class UnknownQueue(SubmitError, LookupError):
    def __init__(self, queue: str, known: tuple[str, ...] = ()) -> None:
        hint = f" (declared: {', '.join(known)})" if known else ""
        super().__init__(f"unknown queue {queue!r}{hint}")
        self.queue = queue


class InvalidSubmission(SubmitError, ValueError):
    """An option of the submission is out of its range."""


class NotSerializable(SubmitError, TypeError):
    def __init__(self, argument: str, reason: str) -> None:
        super().__init__(f"argument {argument} cannot be encoded with msgpack: {reason}")
        self.argument = argument


class PayloadTooLarge(SubmitError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"encoded arguments take {size} bytes, over the limit of {limit}")
        self.size = size
        self.limit = limit


class IdempotencyConflict(SubmitError):
    """The key names a job submitted with another task or other arguments."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was used for job {job_id} with another task or"
            " other arguments"
        )
        self.key = key
        self.job_id = job_id


class Backpressure(SubmitError):
    def __init__(self, pending: int, limit: int, retry_after: float = 1.0) -> None:
        super().__init__(f"{pending} unfinished jobs reached the bound of {limit}; retry later")
        self.pending = pending
        self.limit = limit
        self.retry_after = retry_after


class JobError(ActorqError):
    """Something about one job's outcome."""


class JobFailed(JobError):
    def __init__(self, job_id: str, error: str) -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error


class JobCancelled(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class JobNotFound(JobError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} (never submitted, or past its retention)")
        self.job_id = job_id


class SystemNotRunning(ActorqError):
    """The actor system is not running: not started, stopping, stopped or failed."""


class InvalidLimit(ActorqError, ValueError):
    """A rate limit or a retry budget with an option out of its range."""


class TaskNotImportable(ActorqError, ValueError):
    """A process pool finds a task in its children by module and qualified name only."""

    def __init__(self, task: str, reason: str) -> None:
        super().__init__(f"task {task!r} cannot run in a process pool: {reason}")
        self.task = task
        self.reason = reason


class WorkerProcessDied(ActorqError):
    """Recorded as the failure of a job whose child process died (a failed attempt)."""


class SupervisionError(ActorqError):
    """A supervision tree could not keep its children running."""


class Escalated(SupervisionError):
    def __init__(self, supervisor: str, child: str, cause: BaseException | None) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: child {child!r} exceeded its restart"
            f" intensity (last error: {cause!r})"
        )
        self.supervisor = supervisor
        self.child = child
        self.cause = cause


class JournalError(ActorqError):
    """The journal or snapshot store failed."""


class JournalCorrupted(JournalError):
    def __init__(self, where: str, offset: int, reason: str) -> None:
        super().__init__(f"journal corrupted in {where} at offset {offset}: {reason}")
        self.where = where
        self.offset = offset
        self.reason = reason


class UnknownEventVersion(JournalError):
    def __init__(self, event_type: str, version: int, known: int) -> None:
        super().__init__(
            f"event {event_type!r} has schema version {version}; this actorq reads up to {known}"
        )
        self.event_type = event_type
        self.version = version


class SequenceConflict(JournalError):
    def __init__(self, persistence_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"append to {persistence_id!r} expected last sequence {expected}, found {actual}"
        )
        self.expected = expected
        self.actual = actual


class JournalFenced(JournalError):
    """Another owner holds this journal: two writers would corrupt it."""


class JournalUnavailable(JournalError):
    """The journal backend cannot be reached right now."""


class InvalidJournalURL(JournalError, ValueError):
    """A journal argument names no backend, or names one in a form it cannot read.

    `url` is the argument with any password replaced by ``***``: the message
    is shown and logged, and must never carry a secret.
    """

    def __init__(self, url: str, reason: str, accepted: str) -> None:
        super().__init__(f"invalid journal {url!r}: {reason}; accepted: {accepted}")
        self.url = url
        self.reason = reason


class ScheduleError(ActorqError):
    """A recurring schedule was refused or is unknown; nothing changed."""


class InvalidSchedule(ScheduleError, ValueError):
    """An option of the schedule is out of its range."""


class InvalidCronExpression(InvalidSchedule):
    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid cron expression {expression!r}: {reason}")
        self.expression = expression
        self.reason = reason


class UnknownTimeZone(InvalidSchedule, LookupError):
    def __init__(self, zone: str) -> None:
        super().__init__(f"unknown time zone {zone!r} (expected an IANA name like Europe/Berlin)")
        self.zone = zone


class ScheduleNotFound(ScheduleError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class SimulationError(ActorqError, ValueError):
    """A simulation was asked for something it cannot run (a bad scenario or option)."""
