"""actorq: an actor-model job system on pykka.

Supervision trees (`actorq.supervision`), event-sourced persistence
(`actorq.persistence`) and the job actors (`actorq.actors`), behind one
embedded facade, `ActorSystem`.
"""

import logging as _logging
from importlib.metadata import PackageNotFoundError as _NotFound
from importlib.metadata import version as _version

from actorq.clock import Clock, SystemClock, VirtualClock
from actorq.context import JobContext, current_job
from actorq.errors import (
    ActorqError,
    Backpressure,
    Escalated,
    IdempotencyConflict,
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
    SubmitError,
    SupervisionError,
    SystemNotRunning,
    UnknownEventVersion,
    UnknownQueue,
    UnknownTask,
)
from actorq.job import JobHandle, JobInfo, JobSpec, JobStatus
from actorq.supervision import Address, Backoff, ChildSpec, RestartPolicy, Supervisor
from actorq.system import ActorSystem, Pipeline
from actorq.tasks import Task

try:
    __version__ = _version("actorq")
except _NotFound:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    # the system and its jobs
    "ActorSystem",
    # errors
    "ActorqError",
    # supervision
    "Address",
    "Backoff",
    "Backpressure",
    "ChildSpec",
    # time
    "Clock",
    "Escalated",
    "IdempotencyConflict",
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
    "NotSerializable",
    "PayloadTooLarge",
    "Pipeline",
    "RestartPolicy",
    "SubmitError",
    "SupervisionError",
    "Supervisor",
    "SystemClock",
    "SystemNotRunning",
    "Task",
    "UnknownEventVersion",
    "UnknownQueue",
    "UnknownTask",
    "VirtualClock",
    "current_job",
]

_logging.getLogger(__name__).addHandler(_logging.NullHandler())
