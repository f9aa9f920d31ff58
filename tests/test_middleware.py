"""Middleware hooks, the logging and time-limit middleware, the JSON formatter, tracing."""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Any

import pytest

from actorq import (
    ActorSystem,
    Backoff,
    JobFailed,
    JobSpec,
    JsonFormatter,
    LoggingMiddleware,
    Middleware,
    RestartPolicy,
    TimeLimitMiddleware,
)
from actorq.middleware import JobOutcome, JobRun, RunResult
from tests.helpers import MakeSystem, wait_until

FAST = RestartPolicy(max_restarts=2, within=60.0, backoff=Backoff.constant(0.001))


@pytest.fixture
def make_system(make_system: MakeSystem) -> MakeSystem:
    return functools.partial(make_system, policy=FAST)


class Recorder(Middleware):
    """Records every hook call, in order, under one lock."""

    def __init__(self, name: str, calls: list[tuple[Any, ...]]) -> None:
        self.name = name
        self.calls = calls
        self.lock = threading.Lock()

    def _add(self, *entry: Any) -> None:
        with self.lock:
            self.calls.append((self.name, *entry))

    def before_submit(self, spec: JobSpec) -> JobSpec | None:
        self._add("before_submit", spec.task)
        return None

    def after_submit(self, spec: JobSpec, existing: bool) -> None:
        self._add("after_submit", spec.id, existing)

    def before_job(self, job: JobRun) -> None:
        self._add("before_job", job.id, job.attempt)

    def after_job(self, job: JobRun, result: RunResult) -> None:
        self._add("after_job", job.id, job.attempt, result.ok, result.error)

    def on_retry_scheduled(self, failure: JobOutcome) -> None:
        self._add("retry", failure.id, failure.attempt, failure.retry_delay)

    def on_dead_lettered(self, failure: JobOutcome) -> None:
        self._add("dead", failure.id, failure.attempt, failure.error)

    def on_worker_start(self, worker: str) -> None:
        self._add("worker_start", worker)

    def on_worker_stop(self, worker: str) -> None:
        self._add("worker_stop", worker)


def flaky_task(system: ActorSystem, failures: int) -> None:
    count = {"n": 0}

    @system.task("flaky")
    def flaky() -> str:
        count["n"] += 1
        if count["n"] <= failures:
            raise ValueError(f"failure {count['n']}")
        return "ok"


def test_hooks_are_called_in_order_with_outcomes(make_system: MakeSystem) -> None:
    calls: list[tuple[Any, ...]] = []
    system = make_system(workers=1, middleware=[Recorder("a", calls), Recorder("b", calls)])
    flaky_task(system, failures=1)
    with system:
        handle = system.submit("flaky")
        assert handle.result(10) == "ok"
        wait_until(lambda: ("b", "after_job", handle.id, 2, True, None) in calls)
    seen_a = [c[1:] for c in calls if c[0] == "a"]
    seen_b = [c[1:] for c in calls if c[0] == "b"]
    assert sorted(seen_a, key=repr) == sorted(seen_b, key=repr)
    # Each hook runs the middleware in the order declared.
    for entry in seen_a:
        assert calls.index(("a", *entry)) < calls.index(("b", *entry))
    worker_side = [c for c in seen_a if c[0] in ("before_job", "after_job")]
    assert worker_side == [
        ("before_job", handle.id, 1),
        ("after_job", handle.id, 1, False, "ValueError: failure 1"),
        ("before_job", handle.id, 2),
        ("after_job", handle.id, 2, True, None),
    ]
    assert seen_a.index(("worker_start", "worker-1")) < seen_a.index(worker_side[0])
    assert seen_a.index(("before_submit", "flaky")) < seen_a.index(worker_side[0])
    # The retry hook runs once the failure is durable, on the Dispatcher's
    # thread; the submit hook in the caller's: either may come after the run.
    assert ("after_submit", handle.id, False) in seen_a
    assert [c for c in seen_a if c[0] == "retry"] == [("retry", handle.id, 1, 0.001)]
    assert ("a", "worker_stop", "worker-1") in calls
    assert ("b", "worker_stop", "worker-1") in calls


def test_dead_lettered_hook(make_system: MakeSystem) -> None:
    calls: list[tuple[Any, ...]] = []
    system = make_system(middleware=[Recorder("r", calls)])
    flaky_task(system, failures=10)
    with system:
        handle = system.submit("flaky")
        with pytest.raises(JobFailed):
            handle.result(10)
        wait_until(lambda: any(c[1] == "dead" for c in calls))
    outcomes = [c[1:] for c in calls if c[1] in ("retry", "dead")]
    assert outcomes == [
        ("retry", handle.id, 1, 0.001),
        ("retry", handle.id, 2, 0.001),
        ("dead", handle.id, 3, "ValueError: failure 3"),
    ]


class Raising(Middleware):
    def before_submit(self, spec: JobSpec) -> JobSpec | None:
        raise RuntimeError("bad before_submit")

    def after_submit(self, spec: JobSpec, existing: bool) -> None:
        raise RuntimeError("bad after_submit")

    def before_job(self, job: JobRun) -> None:
        raise RuntimeError("bad before_job")

    def after_job(self, job: JobRun, result: RunResult) -> None:
        raise RuntimeError("bad after_job")

    def on_retry_scheduled(self, failure: JobOutcome) -> None:
        raise RuntimeError("bad on_retry_scheduled")

    def on_worker_start(self, worker: str) -> None:
        raise RuntimeError("bad on_worker_start")


def test_a_raising_middleware_breaks_nothing_and_is_logged(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[Any, ...]] = []
    system = make_system(middleware=[Raising(), Recorder("after", calls)])
    flaky_task(system, failures=1)
    with caplog.at_level(logging.ERROR, logger="actorq.middleware"), system:
        handle = system.submit("flaky")
        assert handle.result(10) == "ok"
        wait_until(lambda: ("after", "after_job", handle.id, 2, True, None) in calls)
    logged = {r.getMessage() for r in caplog.records if r.name == "actorq.middleware"}
    for hook in (
        "before_submit",
        "after_submit",
        "before_job",
        "after_job",
        "on_retry_scheduled",
        "on_worker_start",
    ):
        assert f"middleware hook Raising.{hook} raised; ignored" in logged
    # The middleware after the raising one still ran every hook.
    assert ("after", "retry", handle.id, 1, 0.001) in calls


def test_middleware_must_subclass_middleware() -> None:
    with pytest.raises(TypeError, match="subclass"):
        ActorSystem(middleware=[object()])  # type: ignore[list-item]


def test_logging_middleware_one_line_per_outcome(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    system = make_system(workers=1, middleware=[LoggingMiddleware()])
    flaky_task(system, failures=1)

    @system.task("doomed", policy=RestartPolicy(max_restarts=0))
    def doomed() -> None:
        raise KeyError("gone")

    with caplog.at_level(logging.INFO, logger="actorq.jobs"), system:
        good = system.submit("flaky")
        assert good.result(10) == "ok"
        bad = system.submit("doomed")
        with pytest.raises(JobFailed):
            bad.result(10)
        wait_until(lambda: len([r for r in caplog.records if r.name == "actorq.jobs"]) >= 3)
    lines = [r for r in caplog.records if r.name == "actorq.jobs"]
    summary = [(r.levelname, r.job_id, r.attempt, r.outcome) for r in lines]  # type: ignore[attr-defined]
    assert summary == [
        ("WARNING", good.id, 1, "retrying"),
        ("INFO", good.id, 2, "succeeded"),
        ("WARNING", bad.id, 1, "dead"),
    ]
    for record in lines:
        assert record.task in ("flaky", "doomed")  # type: ignore[attr-defined]
        assert isinstance(record.duration, float)  # type: ignore[attr-defined]


def test_json_formatter_output_parses() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("actorq.jobs", logging.WARNING, __file__, 1, "job %s", ("j1",), None)
    record.job_id = "j1"
    record.attempt = 2
    record.odd = b"\x00"
    line = formatter.format(record)
    data = json.loads(line)
    assert data["message"] == "job j1"
    assert (data["level"], data["logger"], data["job_id"], data["attempt"]) == (
        "WARNING",
        "actorq.jobs",
        "j1",
        2,
    )
    assert data["odd"] == repr(b"\x00")
    assert data["time"].endswith("+00:00")
    try:
        raise ValueError("inside")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", (), sys.exc_info())
    data = json.loads(formatter.format(record))
    assert "ValueError: inside" in data["exception"]
    assert "\n" not in formatter.format(record)


def test_time_limit_middleware_sets_and_caps_timeouts(make_system: MakeSystem) -> None:
    system = make_system(middleware=[TimeLimitMiddleware(default=5.0, maximum=10.0)])

    @system.task("quick")
    def quick() -> int:
        return 1

    with system:
        plain = system.submit("quick")
        long = system.submit("quick", timeout=60.0)
        short = system.submit("quick", timeout=1.0)
        assert [system.job(h.id).spec.timeout for h in (plain, long, short)] == [5.0, 10.0, 1.0]


def test_time_limit_middleware_fails_a_job_that_overruns(make_system: MakeSystem) -> None:
    release = threading.Event()
    system = make_system(middleware=[TimeLimitMiddleware(default=0.2)])

    @system.task("hang", policy=RestartPolicy(max_restarts=0))
    def hang() -> None:
        release.wait(10)

    with system:
        handle = system.submit("hang")
        with pytest.raises(JobFailed, match="timed out"):
            handle.result(10)
        release.set()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default": -1.0}, "default"),
        ({"maximum": 0}, "maximum"),
        ({"default": 3, "maximum": 2}, "exceed"),
    ],
)
def test_time_limit_middleware_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TimeLimitMiddleware(**options)


def test_trace_context_travels_with_the_job(make_system: MakeSystem) -> None:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from actorq.otel import TracingMiddleware

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    system = make_system(middleware=[TracingMiddleware(tracer_provider=provider)])
    flaky_task(system, failures=1)
    with system:
        with tracer.start_as_current_span("request") as parent:
            handle = system.submit("flaky")
        assert handle.result(10) == "ok"
        assert system.job(handle.id).spec.headers is not None

        def runs_of_flaky() -> list[Any]:
            return [s for s in exporter.get_finished_spans() if s.name == "run flaky"]

        wait_until(lambda: len(runs_of_flaky()) == 2)
    runs = runs_of_flaky()
    context = parent.get_span_context()
    for span in runs:
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == context.trace_id
        assert span.parent is not None and span.parent.span_id == context.span_id
    by_attempt = {s.attributes["actorq.job.attempt"]: s for s in runs if s.attributes}
    assert by_attempt[1].status.status_code is StatusCode.ERROR
    assert by_attempt[2].status.status_code is StatusCode.UNSET
