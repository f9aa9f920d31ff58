"""Middleware: a class of no-op hooks, each named after the moment it runs (Dramatiq's model).

Subclass `Middleware`, override the hooks you need, and declare instances
on the system: ``ActorSystem(middleware=[LoggingMiddleware(), ...])``. They
run in the order given (after-hooks too). Only overridden hooks are called,
so middleware costs nothing on a path whose hooks nobody overrides.

Where each hook runs:

- `before_submit`, `after_submit`: the submitting thread. `before_submit`
  may return a replacement spec (`dataclasses.replace(spec, ...)`), to set
  a timeout or add `headers` that travel with the job to its worker.
- `before_job`, `after_job`: the worker's thread, around the handler.
- `on_succeeded`, `on_retry_scheduled`, `on_dead_lettered`: the Dispatcher's
  thread, once the outcome is in the journal, in journal order (a retry may
  already be running by then). Keep them quick: they sit on its hot path.
- `on_worker_start`, `on_worker_stop`: the worker's thread.

An exception inside a hook is logged (logger ``actorq.middleware``) and
otherwise ignored: it never fails the job, the submission or the actor.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actorq.core.job import JobSpec

logger = logging.getLogger(__name__)
outcomes = logging.getLogger("actorq.jobs")


@dataclass(frozen=True, slots=True)
class JobRun:
    """One attempt as a worker runs it."""

    id: str
    attempt: int
    task: str
    worker: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RunResult:
    """How an attempt ended in the worker (the Dispatcher decides retry or give up)."""

    ok: bool
    seconds: float
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """An attempt's outcome as the Dispatcher recorded it in the journal.

    `outcome`: succeeded, retrying (`retry_delay` is the backoff drawn) or dead.
    """

    id: str
    task: str
    queue: str
    attempt: int
    outcome: str
    at: float
    ran: float | None = None
    error: str | None = None
    traceback: str | None = None
    retry_delay: float | None = None


class Middleware:
    """No-op hooks; override the ones you need."""

    def before_submit(self, spec: JobSpec) -> JobSpec | None:
        """Return a replacement spec, or None to keep it."""
        return None

    def after_submit(self, spec: JobSpec, existing: bool) -> None:
        """The job is accepted (`existing`: an idempotency key matched an earlier job)."""

    def before_job(self, job: JobRun) -> None:
        """The handler is about to run."""

    def after_job(self, job: JobRun, result: RunResult) -> None:
        """The handler returned or raised."""

    def on_succeeded(self, outcome: JobOutcome) -> None:
        """The job succeeded (and its result is durable)."""

    def on_retry_scheduled(self, failure: JobOutcome) -> None:
        """A failed attempt will be retried after `failure.retry_delay` seconds."""

    def on_dead_lettered(self, failure: JobOutcome) -> None:
        """The job's policy gave up: it is dead and goes to the dead letters."""

    def on_worker_start(self, worker: str) -> None:
        """A worker (incarnation) started."""

    def on_worker_stop(self, worker: str) -> None:
        """A worker (incarnation) stopped."""


HOOKS = (
    "before_submit",
    "after_submit",
    "before_job",
    "after_job",
    "on_succeeded",
    "on_retry_scheduled",
    "on_dead_lettered",
    "on_worker_start",
    "on_worker_stop",
)


class MiddlewareStack:
    """The declared middleware, as one list of overridden methods per hook."""

    def __init__(self, middleware: Sequence[Middleware] = ()) -> None:
        for item in middleware:
            if not isinstance(item, Middleware):
                raise TypeError(f"middleware must subclass actorq.Middleware, not {item!r}")
        self.middleware = tuple(middleware)
        hooks: dict[str, list[Callable[..., Any]]] = {}
        for name in HOOKS:
            base = getattr(Middleware, name)
            hooks[name] = [
                getattr(item, name)
                for item in self.middleware
                if getattr(type(item), name, base) is not base
            ]
        self.before_submit = hooks["before_submit"]
        self.after_submit = hooks["after_submit"]
        self.before_job = hooks["before_job"]
        self.after_job = hooks["after_job"]
        self.on_succeeded = hooks["on_succeeded"]
        self.on_retry_scheduled = hooks["on_retry_scheduled"]
        self.on_dead_lettered = hooks["on_dead_lettered"]
        self.on_worker_start = hooks["on_worker_start"]
        self.on_worker_stop = hooks["on_worker_stop"]
        self.around_jobs = bool(self.before_job or self.after_job)
        self.on_outcomes = bool(
            self.on_succeeded or self.on_retry_scheduled or self.on_dead_lettered
        )

    def __bool__(self) -> bool:
        return bool(self.middleware)

    @staticmethod
    def call(hooks: list[Callable[..., Any]], *args: Any) -> None:
        for hook in hooks:
            try:
                hook(*args)
            except Exception:
                logger.exception("middleware hook %s raised; ignored", _name(hook))

    def submitting(self, spec: JobSpec) -> JobSpec:
        for hook in self.before_submit:
            try:
                replaced = hook(spec)
            except Exception:
                logger.exception("middleware hook %s raised; ignored", _name(hook))
                continue
            if isinstance(replaced, JobSpec):
                if replaced.id != spec.id:
                    logger.error("middleware hook %s changed the job id; ignored", _name(hook))
                    continue
                spec = replaced
        return spec


def _name(hook: Callable[..., Any]) -> str:
    return getattr(hook, "__qualname__", repr(hook))


# -- shipped middleware -----------------------------------------------------------


class LoggingMiddleware(Middleware):
    """One structured log line per job outcome, on the logger ``actorq.jobs``.

    Logged by the Dispatcher once the outcome is durable, in journal order: a
    success at INFO; a failed attempt that will be retried, and a job that is
    dead, at WARNING. Each record carries `job_id`, `task`, `queue`,
    `attempt`, `duration` (the handler's run time) and `outcome` as
    attributes (see `actorq.logs.JsonFormatter`), and `error` and
    `retry_delay` for failures.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or outcomes

    def on_succeeded(self, outcome: JobOutcome) -> None:
        self.logger.info(
            "job %s %s attempt %d succeeded in %.3fs",
            outcome.id,
            outcome.task,
            outcome.attempt,
            outcome.ran or 0.0,
            extra=self._fields(outcome),
        )

    def on_retry_scheduled(self, failure: JobOutcome) -> None:
        self.logger.warning(
            "job %s %s attempt %d failed, retry in %.3fs: %s",
            failure.id,
            failure.task,
            failure.attempt,
            failure.retry_delay,
            failure.error,
            extra=self._fields(failure),
        )

    def on_dead_lettered(self, failure: JobOutcome) -> None:
        self.logger.warning(
            "job %s %s attempt %d failed, giving up (dead): %s",
            failure.id,
            failure.task,
            failure.attempt,
            failure.error,
            extra=self._fields(failure),
        )

    @staticmethod
    def _fields(outcome: JobOutcome) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "job_id": outcome.id,
            "task": outcome.task,
            "queue": outcome.queue,
            "attempt": outcome.attempt,
            "duration": outcome.ran,
            "outcome": outcome.outcome,
        }
        if outcome.outcome != "succeeded":
            fields["error"] = outcome.error
            fields["retry_delay"] = outcome.retry_delay
        return fields


class TimeLimitMiddleware(Middleware):
    """Give every job a time limit: `default` for jobs without one, capped at `maximum`.

    The limit becomes the job's `timeout`, which the Dispatcher enforces: an
    attempt that outlives it fails (and is retried by its policy), and its
    hung worker is replaced.
    """

    def __init__(self, default: float | None = None, maximum: float | None = None) -> None:
        for label, value in (("default", default), ("maximum", maximum)):
            if value is not None and (not isinstance(value, int | float) or not value > 0):
                raise ValueError(f"time limit {label} must be a positive number, not {value!r}")
        if default is not None and maximum is not None and default > maximum:
            raise ValueError("time limit default must not exceed its maximum")
        self.default = default
        self.maximum = maximum

    def before_submit(self, spec: JobSpec) -> JobSpec | None:
        timeout = spec.timeout if spec.timeout is not None else self.default
        if timeout is not None and self.maximum is not None:
            timeout = min(timeout, self.maximum)
        if timeout == spec.timeout:
            return None
        return dataclasses.replace(spec, timeout=timeout)
