"""Prometheus metrics: the counters move as jobs run, scraped and parsed like Prometheus would."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actorq import ActorSystem, RestartPolicy
from actorq.service.metrics import PrometheusObserver, RateWindow
from tests.helpers import wait_until
from tests.served import Served, served_system

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def served() -> Iterator[Served]:
    with served_system(token=None, observer=PrometheusObserver()) as s:
        yield s


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_counters_move_as_jobs_run(served: Served) -> None:
    """Submitted, finished by status, dead letters and the duration histogram all count."""
    with served.client(token=None) as client:
        for a in range(3):
            client.post("/jobs", json={"task": "add", "args": [a, 1]})
        client.post("/jobs", json={"task": "boom"})
        waiting = client.post("/jobs", json={"task": "add", "args": [0, 0], "delay": 60}).json()
        client.delete(f"/jobs/{waiting['id']}")

        def settled() -> Samples | None:
            samples = scrape(client)
            done = value(samples, "actorq_jobs_finished_total", task="add", status="succeeded")
            dead = value(samples, "actorq_dead_letters")
            return samples if done == 3 and dead == 1 else None

        samples = wait_until(settled)
        assert samples is not None

    assert value(samples, "actorq_jobs_submitted_total", task="add", queue="default") == 4
    assert value(samples, "actorq_jobs_submitted_total", task="boom", queue="default") == 1
    assert value(samples, "actorq_jobs_finished_total", task="boom", status="dead") == 1
    assert value(samples, "actorq_jobs_finished_total", task="add", status="cancelled") == 1
    assert value(samples, "actorq_job_duration_seconds_count", task="add") == 3
    assert value(samples, "actorq_job_duration_seconds_bucket", task="add", le="+Inf") == 3
    assert value(samples, "actorq_job_duration_seconds_count", task="boom") == 1
    assert value(samples, "actorq_job_wait_seconds_count", queue="default") == 4
    assert value(samples, "actorq_queue_depth", queue="default") == 0
    assert value(samples, "actorq_jobs_in_flight") == 0
    assert value(samples, "actorq_journal_append_seconds_count", persistence_id="dispatcher") > 0
    assert value(samples, "actorq_journal_batch_events_sum", persistence_id="dispatcher") > 0
    assert ("actorq_recovery_seconds", frozenset({("persistence_id", "dispatcher")})) in samples


def test_queue_depth_and_in_flight_follow_the_dispatcher() -> None:
    """With one worker taking one job at a time, one runs and the rest are counted as queued."""
    observer = PrometheusObserver()
    with served_system(observer=observer, workers=1, prefetch=1) as s:
        for _ in range(3):
            s.system.submit("block")

        def gauges() -> bool:
            samples = parse(generate_latest(observer.registry).decode())
            return (
                value(samples, "actorq_jobs_in_flight") == 1
                and value(samples, "actorq_queue_depth", queue="default") == 2
            )

        wait_until(gauges)
        s.gate.set()
        s.system.join(10)

        def drained() -> bool:  # gauges follow the journal: the last commit may linger
            samples = parse(generate_latest(observer.registry).decode())
            return value(samples, "actorq_queue_depth", queue="default") == 0

        wait_until(drained)
        samples = parse(generate_latest(observer.registry).decode())
        assert value(samples, "actorq_jobs_in_flight") == 0


def test_a_replaced_worker_counts_as_a_restart() -> None:
    """A job that outlives its timeout gets its worker replaced: actor_restarts_total moves."""
    observer = PrometheusObserver()
    release = threading.Event()
    system = ActorSystem(workers=1, observer=observer)

    @system.task("hang", policy=RestartPolicy(max_restarts=0))
    def hang() -> None:
        release.wait(30)

    system.start()
    try:
        system.submit("hang", timeout=0.05)

        def restarted() -> bool:
            samples = parse(generate_latest(observer.registry).decode())
            return value(samples, "actorq_actor_restarts_total", actor="worker-1") >= 1

        wait_until(restarted)
    finally:
        release.set()
        system.stop(timeout=5)


def test_metrics_is_404_without_an_observer() -> None:
    """A system built without a PrometheusObserver has no metrics to serve."""
    with served_system(token=None) as s, s.client(token=None) as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


def test_observers_keep_to_their_own_registry() -> None:
    """Nothing reaches the process-global registry, and two observers never collide."""
    first, second = PrometheusObserver(), PrometheusObserver()
    assert first.registry is not second.registry
    assert b"actorq_" not in generate_latest(REGISTRY)


def test_rate_window_averages_over_the_last_minute() -> None:
    """The finishing rate counts the last 60 s, over the time observed while that is shorter."""
    now = [1000.0]
    window = RateWindow(60, clock=lambda: now[0])
    now[0] += 10
    window.add(Counter({"default": 20}))
    assert window.per_second(["default", "bulk"]) == {"default": 2.0, "bulk": 0.0}
    now[0] += 100
    assert window.per_second(["default"]) == {"default": 0.0}
