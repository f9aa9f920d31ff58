"""OpenTelemetry trace propagation: the worker's span continues the submitter's trace.

Install the extra (``pip install actorq[otel]``) and declare the middleware:
``ActorSystem(middleware=[TracingMiddleware()])``. At submit, the current
trace context is injected into the job's `headers` with the globally
configured propagator (W3C Trace Context by default); it is journaled with
the job, so a retry, or a run after a restart, continues the same trace.
The worker extracts it and runs the handler inside a CONSUMER span named
``run <task>``, the child of the submitter's span; a failure marks the span
as an error and records the exception's type and traceback.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from actorq.core.job import JobSpec
from actorq.middleware import JobRun, Middleware, RunResult


class TracingMiddleware(Middleware):
    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("actorq", tracer_provider=tracer_provider)
        self._running = threading.local()  # a worker runs one job at a time per thread

    def before_submit(self, spec: JobSpec) -> JobSpec | None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if not carrier:
            return None  # no trace in progress: nothing to carry
        return dataclasses.replace(spec, headers={**(spec.headers or {}), **carrier})

    def before_job(self, job: JobRun) -> None:
        parent = propagate.extract(dict(job.headers))
        span = self.tracer.start_span(
            f"run {job.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "actorq.job.id": job.id,
                "actorq.job.task": job.task,
                "actorq.job.attempt": job.attempt,
                "actorq.worker": job.worker,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._running.current = (span, token)

    def after_job(self, job: JobRun, result: RunResult) -> None:
        current: tuple[Any, Any] | None = getattr(self._running, "current", None)
        if current is None:
            return
        self._running.current = None
        span, token = current
        try:
            if not result.ok:
                span.set_status(Status(StatusCode.ERROR, result.error))
                span.add_event(
                    "exception",
                    {
                        "exception.message": result.error or "",
                        "exception.stacktrace": result.traceback or "",
                    },
                )
            span.end()
        finally:
            context.detach(token)
