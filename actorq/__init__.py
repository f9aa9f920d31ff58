"""actorq: an actor-model job system on pykka.

Supervision trees (`actorq.supervision`), event-sourced persistence
(`actorq.persistence`) and the job actors (`actorq.actors`), behind one
embedded facade, `ActorSystem`.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _NotFound
from importlib.metadata import version as _version

from actorq.client import AsyncClient, Client
from actorq.clock import Clock, SystemClock, VirtualClock
from actorq.context import JobContext, current_job
from actorq.core.job import Attempt
from actorq.core.limits import RateLimit, RetryBudget
from actorq.core.schedules import ScheduleInfo
from actorq.errors import (
    ActorqError,
    Backpressure,
    Escalated,
    IdempotencyConflict,
    InvalidCronExpression,
    InvalidLimit,
    InvalidSchedule,
    InvalidSubmission,
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    JournalCorrupted,
    JournalError,
    JournalFenced,
    JournalUnavailable,
    NotSerializable,
    PayloadTooLarge,
    ScheduleError,
    ScheduleNotFound,
    SubmitError,
    SupervisionError,
    SystemNotRunning,
    TaskNotImportable,
    UnknownEventVersion,
    UnknownQueue,
    UnknownTask,
    UnknownTimeZone,
    WorkerProcessDied,
)
from actorq.job import JobHandle, JobInfo, JobSpec, JobStatus
from actorq.logs import JsonFormatter
from actorq.middleware import LoggingMiddleware, Middleware, TimeLimitMiddleware
from actorq.supervision import Address, Backoff, ChildSpec, RestartPolicy, Supervisor
from actorq.system import ActorSystem, Pipeline
from actorq.tasks import AsyncTask, Task

try:
    __version__ = _version("actorq")
except _NotFound:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "ActorSystem",
    "ActorqError",
    "Address",
    "AsyncClient",
    "AsyncTask",
    "Attempt",
    "Backoff",
    "Backpressure",
    "ChildSpec",
    "Client",
    "Clock",
    "Escalated",
    "IdempotencyConflict",
    "InvalidCronExpression",
    "InvalidLimit",
    "InvalidSchedule",
    "InvalidSubmission",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobInfo",
    "JobNotFound",
    "JobSpec",
    "JobStatus",
    "JournalCorrupted",
    "JournalError",
    "JournalFenced",
    "JournalUnavailable",
    "JsonFormatter",
    "LoggingMiddleware",
    "Middleware",
    "NotSerializable",
    "PayloadTooLarge",
    "Pipeline",
    "RateLimit",
    "RestartPolicy",
    "RetryBudget",
    "ScheduleError",
    "ScheduleInfo",
    "ScheduleNotFound",
    "SubmitError",
    "SupervisionError",
    "Supervisor",
    "SystemClock",
    "SystemNotRunning",
    "Task",
    "TaskNotImportable",
    "TimeLimitMiddleware",
    "UnknownEventVersion",
    "UnknownQueue",
    "UnknownTask",
    "UnknownTimeZone",
    "VirtualClock",
    "WorkerProcessDied",
    "current_job",
]

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
