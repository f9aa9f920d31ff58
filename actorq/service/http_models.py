"""The HTTP API's request and response bodies, as pydantic models.

They exist for two reasons: FastAPI validates requests against them before
a handler runs (so a wrongly typed field is a 422 and never reaches the
facade), and they make /openapi.json precise enough for clients and for
schemathesis to generate requests from. Types are strict: JSON "5" is not
the integer 5.

Job arguments and results are whatever msgpack carries. JSON cannot carry
all of it: bytes are shown as URL-safe base64 text and NaN/Infinity as the strings
"NaN", "Infinity" and "-Infinity" in responses.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from actorq.core.cron import FallBack
from actorq.core.schedules import (
    DEFAULT_CATCH_UP,
    DEFAULT_OVERLAP,
    DEFAULT_TZ,
    DEFAULT_WINDOW,
    CatchUp,
    Overlap,
    ScheduleInfo,
)
from actorq.job import JobInfo, JobStatus
from actorq.system import PRIORITY_MAX, PRIORITY_MIN

Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class SubmitRequest(BaseModel):
    """A job to submit; omitted options take the task's defaults."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={"examples": [{"task": "add", "args": [1, 2]}]},
    )

    task: Name = Field(description="The registered task's name.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    priority: int | None = Field(
        None, ge=PRIORITY_MIN, le=PRIORITY_MAX, description="Higher runs first."
    )
    delay: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Seconds to wait before the job is ready."
    )
    queue: Name | None = Field(None, description="A declared queue; default: the task's.")
    idempotency_key: Name | None = Field(
        None, description="A second submission with the same key returns the first job."
    )
    timeout: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Seconds an attempt may run."
    )
    durability: Literal["durable", "accepted"] = Field(
        "durable",
        description=(
            "durable: answered (201) once the job is in the journal; accepted: answered"
            " (202) once the dispatcher has sequenced it, before it is durable."
        ),
    )


class Attempt(BaseModel):
    """One attempt of a job."""

    attempt: int
    started_at: float | None = Field(description="Unix time the job was handed to its worker.")
    finished_at: float = Field(description="Unix time of the outcome.")
    worker: str | None
    node: str | None = Field(description="Host name of the process that ran it.")
    outcome: str = Field(description="succeeded, failed, cancelled or interrupted.")
    error: str | None
    traceback: str | None
    retry_delay: float | None = Field(description="Backoff drawn after a failure; null: no retry.")
    ran: float | None = Field(description="Seconds the handler ran, as its worker measured.")


class Job(BaseModel):
    """A point-in-time copy of a job's record."""

    model_config = ConfigDict(ser_json_bytes="base64", ser_json_inf_nan="strings")

    id: str
    task: str
    status: JobStatus
    attempts: int
    queue: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    result: Any = Field(description="The return value once succeeded, else null.")
    error: str | None = Field(description="The last failure's text.")
    idempotency_key: str | None
    created_at: float = Field(description="Unix time of the submission.")
    run_at: float | None = Field(description="When a delayed or retrying job becomes ready.")
    started_at: float | None
    finished_at: float | None
    traceback: str | None = Field(
        default=None, description="The last failure's traceback, its last frames, at most 8 KiB."
    )
    history: list[Attempt] = Field(
        default_factory=list,
        description="The job's latest attempts (at most 20), oldest first.",
    )

    @classmethod
    def of(cls, info: JobInfo) -> Job:
        data = info.to_dict()
        for name in ("args", "kwargs", "result"):
            data[name] = shown(data[name])
        data["history"] = [Attempt.model_construct(**a) for a in data["history"]]
        return cls.model_construct(**{**data, "status": info.status})

    @classmethod
    def unshowable(cls, info: JobInfo, error: BaseException) -> Job:
        """The record without its arguments and result, which could not be read."""
        spec = info.spec
        note = f"the record's arguments or result cannot be shown: {type(error).__name__}"
        return cls.model_construct(
            id=info.id,
            task=spec.task,
            status=info.status,
            attempts=info.attempts,
            queue=spec.queue,
            priority=spec.priority,
            args=[],
            kwargs={},
            result=None,
            error=info.error or note,
            idempotency_key=spec.idempotency_key,
            created_at=info.created_at,
            run_at=info.run_at,
            started_at=info.started_at,
            finished_at=info.finished_at,
            history=[],
        )


def shown(value: Any, depth: int = 0) -> Any:
    """A msgpack value as JSON can carry it.

    Map keys that are not text become their JSON text (``1`` -> ``"1"``,
    ``(1, 2)`` -> ``"[1, 2]"``), timestamps ISO 8601 text, other extension
    types ``{"ext": code, "data": bytes}``. Past 64 levels the rest is cut to
    the text ``"..."``.
    """
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if depth >= SHOWN_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else _key_text(key): shown(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [shown(item, depth + 1) for item in value]
    if isinstance(value, msgpack.Timestamp):
        return value.to_datetime().isoformat()
    if isinstance(value, msgpack.ExtType):
        return {"ext": value.code, "data": value.data}
    return repr(value)


def _key_text(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    return json.dumps(shown(key), default=repr, allow_nan=True)


SHOWN_DEPTH = 64


class Cancelled(BaseModel):
    cancelled: bool = Field(
        description="True if the job will end cancelled; false if it had finished already."
    )


class Purged(BaseModel):
    purged: int = Field(description="How many dead jobs were removed.")


class QueueInfo(BaseModel):
    name: str
    depth: int = Field(description="Jobs queued and ready to run.")
    rate: float | None = Field(
        description="Jobs finished per second over the last minute; null without metrics."
    )


class Queues(BaseModel):
    queues: list[QueueInfo]
    in_flight: int = Field(description="Jobs running on a worker now.")
    active: int = Field(description="Jobs not yet finished: scheduled, queued, running, retrying.")
    dead_letters: int
    statuses: dict[str, int] = Field(description="Jobs the dispatcher holds, per status.")
    rate_window_seconds: int


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    running: bool = Field(description="The system accepts submissions.")
    journal: bool = Field(description="The journal answered.")
    supervisor: bool = Field(description="No supervisor gave up.")
    detail: str | None = None


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where in the request: body, field, index...")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details body (`application/problem+json`)."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(None, description="Per-field validation errors.")


class ScheduleRequest(BaseModel):
    """A recurring schedule to create, or the new definition of an existing one."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [{"cron": "*/15 * * * *", "task": "report", "tz": "Europe/Berlin"}]
        },
    )

    cron: Name = Field(description="Five cron fields: minute hour day-of-month month weekday.")
    task: Name = Field(description="The registered task's name.")
    args: list[Any] = Field(default_factory=list, description="Positional arguments of each job.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    tz: Name = Field(DEFAULT_TZ, description="An IANA time zone name.")
    catch_up: CatchUp = Field(
        DEFAULT_CATCH_UP, description="Fires missed while the system was down: skip, one or all."
    )
    window: float = Field(
        DEFAULT_WINDOW,
        gt=0,
        allow_inf_nan=False,
        description="Seconds: a missed fire older than this is never caught up.",
    )
    overlap: Overlap = Field(
        DEFAULT_OVERLAP,
        description="When the previous fire's job is unfinished: allow, skip or buffer_one.",
    )
    fall_back: FallBack = Field(
        "once", description="A wall-clock time repeated when DST ends fires once or twice."
    )


class Schedule(BaseModel):
    """A point-in-time copy of a schedule."""

    model_config = ConfigDict(ser_json_bytes="base64", ser_json_inf_nan="strings")

    name: str
    cron: str
    tz: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    catch_up: CatchUp
    window: float
    overlap: Overlap
    fall_back: FallBack
    paused: bool
    created_at: float
    high_water_mark: float = Field(
        description="Unix time of the last fire instant decided (fired, skipped or missed)."
    )
    last_job: str | None
    fired: int
    missed: int = Field(description="Fire instants missed while the system was down.")
    skipped: int = Field(description="Fires skipped because the previous job was unfinished.")
    buffered: float | None = Field(description="A fire instant held back (buffer_one).")
    next_fires: list[str] = Field(description="The next 5 fire times, ISO 8601 in the zone.")

    @classmethod
    def of(cls, info: ScheduleInfo) -> Schedule:
        fields = {name: getattr(info, name) for name in ScheduleInfo.__slots__}
        fields["next_fires"] = [t.isoformat() for t in info.next_fires]
        return cls.model_construct(**fields)


class Deleted(BaseModel):
    deleted: bool
