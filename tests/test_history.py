"""Execution history and tracebacks: recorded from the journal, bounded, shown everywhere."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from actorq import ActorSystem, Backoff, JobFailed, JobStatus, RestartPolicy
from actorq.actors.execution import TRACEBACK_CHARS
from actorq.core import events as ev
from actorq.core.job import JobSpec
from actorq.core.state import HISTORY_LIMIT, DispatcherState
from actorq.persistence import codec
from tests.served import served_system
from tests.test_cli import start_worker, stop_worker

FAST = RestartPolicy(max_restarts=2, within=60.0, backoff=Backoff.constant(0.001))


def build(journal: str) -> ActorSystem:
    system = ActorSystem(workers=2, journal=journal, policy=FAST)
    count = {"n": 0}

    @system.task("flaky")
    def flaky() -> str:
        count["n"] += 1
        if count["n"] <= 2:
            raise ValueError(f"failure {count['n']}")
        return "ok"

    @system.task("deep", policy=RestartPolicy(max_restarts=0))
    def deep(depth: int, size: int) -> None:
        def dive(n: int) -> None:
            if n == 0:
                raise RuntimeError("x" * size)
            dive(n - 1)

        dive(depth)

    return system


def test_attempts_are_recorded_with_times_worker_outcome_and_delay(tmp_path: Path) -> None:
    system = build("memory")
    with system:
        handle = system.submit("flaky")
        assert handle.result(10) == "ok"
        info = system.job(handle.id)
    assert info.attempts == 3
    history = info.history
    assert [a.attempt for a in history] == [1, 2, 3]
    assert [a.outcome for a in history] == ["failed", "failed", "succeeded"]
    assert [a.error for a in history] == ["ValueError: failure 1", "ValueError: failure 2", None]
    assert [a.retry_delay for a in history] == [0.001, 0.001, None]
    for attempt in history:
        assert attempt.worker is not None and attempt.worker.startswith("worker-")
        assert attempt.node == system.node
        assert attempt.started_at is not None and attempt.started_at <= attempt.finished_at
        assert attempt.ran is not None and attempt.ran >= 0
    starts = [a.started_at or 0.0 for a in history]
    assert history[0].finished_at <= starts[1] <= history[1].finished_at <= starts[2]
    assert history[0].traceback is not None
    assert "in flaky" in history[0].traceback
    assert history[0].traceback.rstrip().endswith("ValueError: failure 1")
    assert history[2].traceback is None
    assert info.traceback is None  # the job succeeded in the end


def test_traceback_is_bounded_and_shown_for_a_dead_job() -> None:
    system = build("memory")
    with system:
        small = system.submit("deep", 3, 10)
        huge = system.submit("deep", 200, 50_000)
        for handle in (small, huge):
            with pytest.raises(JobFailed):
                handle.result(10)
        small_info = system.job(small.id)
        huge_info = system.job(huge.id)
    assert small_info.status is JobStatus.DEAD
    assert small_info.traceback is not None
    assert small_info.traceback.count("in dive") == 4
    assert small_info.traceback.rstrip().endswith("RuntimeError: " + "x" * 10)
    assert huge_info.traceback is not None
    assert len(huge_info.traceback) <= TRACEBACK_CHARS
    assert huge_info.traceback.startswith("[... ")
    assert huge_info.traceback.rstrip().endswith("x" * 100)  # the end (the error) is kept
    assert huge_info.history[-1].traceback == huge_info.traceback


def test_history_survives_a_restart_on_the_file_journal(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal")
    system = build(journal)
    with system:
        handle = system.submit("flaky")
        assert handle.result(10) == "ok"
        dead = system.submit("deep", 2, 5)
        with pytest.raises(JobFailed):
            dead.result(10)
        before = system.job(handle.id).history
        dead_before = system.job(dead.id)
    assert len(before) == 3
    system = build(journal)
    with system:
        assert system.job(handle.id).history == before
        again = system.job(dead.id)
        assert again.history == dead_before.history
        assert again.traceback == dead_before.traceback
        # The dead letters keep the history too.
        (letter,) = system.dead_letters()
        assert letter.history == dead_before.history


def test_history_is_capped_per_job() -> None:
    state = DispatcherState()
    spec = JobSpec(id="j", task="t", payload=b"\x92\x90\x80")
    state.apply(ev.Submitted(spec, 0.0, None))
    now = 0.0
    for attempt in range(1, HISTORY_LIMIT + 6):
        now += 1
        state.apply(ev.Started("w", ["j"], now, "n"))
        state.apply(ev.Failed("j", attempt, f"e{attempt}", now + 0.5, now + 0.6, 0.1, "tb", 0.4))
        state.apply(ev.BecameDue(["j"], now + 0.6))
    history = state.jobs["j"].info().history
    assert len(history) == HISTORY_LIMIT
    assert history[-1].attempt == HISTORY_LIMIT + 5
    assert history[0].attempt == 6


def test_events_of_earlier_versions_still_load() -> None:
    """Started v1, Succeeded v2 and Failed v1 maps (no node, run time or traceback)."""
    started = codec.event_from_map(
        {"t": "job.started", "v": 1, "worker": "w", "ids": ["a"], "at": 1.0}
    )
    assert started == ev.Started("w", ["a"], 1.0, None)
    succeeded = codec.event_from_map(
        {"t": "job.succeeded", "v": 2, "id": "a", "attempt": 1, "result": b"\xc0", "at": 2.0}
    )
    assert succeeded == ev.Succeeded("a", 1, b"\xc0", 2.0, None)
    failed = codec.event_from_map(
        {
            "t": "job.failed",
            "v": 1,
            "id": "a",
            "attempt": 1,
            "error": "E",
            "at": 2.0,
            "retry_at": None,
            "delay": None,
        }
    )
    assert failed == ev.Failed("a", 1, "E", 2.0, None, None, None, None)
    # And a state built from them has a history with what they knew.
    state = DispatcherState()
    spec = JobSpec(id="a", task="t", payload=b"\x92\x90\x80")
    state.apply(ev.Submitted(spec, 0.0, None))
    state.apply(started)
    state.apply(failed)
    (attempt,) = state.jobs["a"].info().history
    assert (attempt.worker, attempt.node, attempt.outcome, attempt.traceback) == (
        "w",
        None,
        "failed",
        None,
    )


def test_snapshot_rows_without_the_new_fields_still_load() -> None:
    state = DispatcherState()
    spec = JobSpec(id="a", task="t", payload=b"\x92\x90\x80")
    state.apply(ev.Submitted(spec, 0.0, None))
    data = state.to_snapshot()
    fields = data["fields"]
    keep = [i for i, name in enumerate(fields) if name not in ("history", "node", "traceback")]
    old = {
        **data,
        "fields": [fields[i] for i in keep],
        "jobs": [[row[i] for i in keep] for row in data["jobs"]],
    }
    restored = DispatcherState.from_snapshot(old)
    assert restored.logical() == state.logical()


def test_traceback_and_attempts_over_http() -> None:
    with served_system() as served, served.client() as client:
        response = client.post("/jobs", json={"task": "boom"})
        job_id = response.json()["id"]
        with pytest.raises(JobFailed):
            served.system.result(job_id, 10)
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "dead"
    assert "RuntimeError: boom" in job["traceback"]
    assert 'raise RuntimeError("boom")' in job["traceback"]
    (attempt,) = job["history"]
    assert attempt["outcome"] == "failed"
    assert attempt["error"] == "RuntimeError: boom"
    assert attempt["traceback"] == job["traceback"]
    assert attempt["retry_delay"] is None
    assert attempt["worker"].startswith("worker-")


def test_actorq_status_shows_history_and_traceback(tmp_path: Path) -> None:
    worker = start_worker(tmp_path)
    try:
        submitted = worker.run("submit", "fail", '["no luck"]', "--wait", "30")
        assert submitted.returncode != 0
        job_id = json.loads(worker.run("dlq", "list", "--json").stdout)[0]["id"]
        shown = worker.run("status", job_id, "--history")
        assert shown.returncode == 0, shown.stderr
        assert "attempts" in shown.stdout
        assert "RuntimeError: no luck" in shown.stdout
        assert "traceback" in shown.stdout
        assert "raise RuntimeError(message)" in shown.stdout
        plain = worker.run("status", job_id)
        assert "attempts" in plain.stdout  # the count row
        assert "outcome" not in plain.stdout  # no history table without --history
    finally:
        stop_worker(worker)


def test_running_job_has_no_record_until_it_ends() -> None:
    gate = threading.Event()
    system = ActorSystem(workers=1, journal="memory")

    @system.task("wait")
    def wait() -> int:
        assert gate.wait(10)
        return 1

    with system:
        handle = system.submit("wait")
        assert system.job(handle.id).history == ()
        gate.set()
        assert handle.result(10) == 1
        assert [a.outcome for a in system.job(handle.id).history] == ["succeeded"]
