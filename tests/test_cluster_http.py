"""The HTTP API and the CLI against any node of a cluster: the leader, a standby, a new leader."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from actorq.persistence.redis import RedisJournal
from tests.cluster import Node, start_node, wait_leader
from tests.helpers import wait_until
from tests.test_cli import ROOT, actorq_command, free_port

TERMINAL = ("succeeded", "dead", "cancelled")


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


def serving(tmp_path: Path, journal: str) -> tuple[Node, str]:
    """Start a node that serves the HTTP API; returns it and its base URL once it answers."""
    port = free_port()
    node = start_node(tmp_path, journal, "--http", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert node.process.poll() is None, node.text()
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=60, interval=0.05)
    return node, url


def finished(url: str, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
        return job if job["status"] in TERMINAL else None

    job = wait_until(done, timeout=60, interval=0.05)
    assert job is not None
    return job


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*actorq_command(), *args, "--url", url],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_every_node_serves_the_api_and_the_cli_across_a_failover(
    redis_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    journal = f"{redis_url}&lease=1"
    first, first_url = serving(tmp_path, journal)
    nodes.append(first)
    leader = wait_leader([first])
    second, standby_url = serving(tmp_path, journal)
    nodes.append(second)
    assert leader is first and not second.leading
    leader_url = first_url

    # The standby is ready because the leader answers it through Redis.
    def standby_ready() -> dict[str, Any] | None:
        ready = httpx.get(f"{standby_url}/readyz", timeout=10)
        body: dict[str, Any] = ready.json()
        return body if ready.status_code == 200 else None

    ready = wait_until(standby_ready, timeout=30, interval=0.05)
    assert ready is not None and ready["ready"] is True
    assert "standing by" in ready["detail"]

    submitted = httpx.post(f"{standby_url}/jobs", json={"task": "add", "args": [2, 3]}, timeout=30)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.headers["location"] == f"/jobs/{job_id}"
    job = finished(standby_url, job_id)
    assert (job["status"], job["result"]) == ("succeeded", 5)
    assert httpx.get(f"{leader_url}/jobs/{job_id}").json() == job

    # Refusals are the leader's, status and problem body alike.
    for method, path, body in [
        ("POST", "/jobs", {"task": "no-such-task", "args": []}),
        ("POST", "/jobs", {"task": "add", "args": [1, 2], "queue": "no-such-queue"}),
        ("GET", "/jobs/no-such-job", None),
        ("DELETE", "/jobs/no-such-job", None),
        ("POST", "/dlq/no-such-job/retry", None),
        ("DELETE", "/dlq/no-such-job", None),
    ]:
        on_leader = httpx.request(method, f"{leader_url}{path}", json=body, timeout=30)
        on_standby = httpx.request(method, f"{standby_url}{path}", json=body, timeout=30)
        assert on_leader.status_code in (404, 422), (path, on_leader.text)
        assert on_standby.status_code == on_leader.status_code, (path, on_standby.text)
        assert on_standby.headers["content-type"] == "application/problem+json"
        assert on_standby.json() == on_leader.json()

    # Dead letters through the standby: list, retry, purge.
    dead_id = httpx.post(f"{standby_url}/jobs", json={"task": "fail"}, timeout=30).json()["id"]
    assert finished(standby_url, dead_id)["status"] == "dead"
    listed = httpx.get(f"{standby_url}/dlq", timeout=30).json()
    assert [j["id"] for j in listed] == [dead_id]
    assert httpx.get(f"{leader_url}/dlq").json() == listed
    retried = httpx.post(f"{standby_url}/dlq/{dead_id}/retry", timeout=30)
    assert retried.status_code == 200, retried.text
    assert finished(standby_url, dead_id)["status"] == "dead"
    purged = httpx.delete(f"{standby_url}/dlq/{dead_id}", timeout=30)
    assert (purged.status_code, purged.json()) == (200, {"purged": 1})
    assert httpx.get(f"{leader_url}/dlq").json() == []

    queues = httpx.get(f"{standby_url}/queues", timeout=30)
    assert queues.status_code == 200, queues.text
    statuses = queues.json()["statuses"]
    assert (statuses["succeeded"], statuses["dead"]) == (1, 1)
    assert sum(statuses.values()) == 2  # the refusals above created no job
    # Finishing rates are counted where jobs are dispatched; a standby does not guess them.
    assert all(q["rate"] is None for q in queues.json()["queues"])

    # Schedules are the leading node's own: a standby says it does not run them.
    assert httpx.get(f"{standby_url}/schedules").status_code == 503
    assert httpx.get(f"{leader_url}/schedules").status_code == 200

    # The CLI talks to the standby unchanged.
    waited = cli(standby_url, "submit", "add", "[20, 22]", "--wait", "30")
    assert (waited.returncode, waited.stdout.strip()) == (0, "42"), waited.stderr
    shown = cli(standby_url, "status", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == job
    missing = cli(standby_url, "status", "no-such-job")
    assert missing.returncode == 1, missing.stderr
    dlq = cli(standby_url, "dlq", "list")
    assert dlq.returncode == 0, dlq.stderr

    # The leader dies: the former standby keeps answering, then leads and serves directly.
    first.kill()
    assert httpx.get(f"{standby_url}/healthz").status_code == 200
    # Until the new leader has recovered, an answer is the job or a 503 that says when to retry.
    after = httpx.get(f"{standby_url}/jobs/{job_id}", timeout=30)
    assert after.status_code in (200, 503), after.text
    if after.status_code == 503:
        assert int(after.headers["retry-after"]) >= 1
    else:
        assert after.json() == job

    def same_job() -> bool:
        answer = httpx.get(f"{standby_url}/jobs/{job_id}", timeout=30)
        return answer.status_code == 200 and answer.json() == job

    wait_until(same_job, timeout=60, interval=0.05)
    assert wait_leader([second]) is second

    def leading_ready() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{standby_url}/readyz", timeout=10).json()
        return body if body["ready"] and body["detail"] is None else None

    ready_body = wait_until(leading_ready, timeout=30, interval=0.05)
    assert ready_body is not None and ready_body["running"] is True
    again = httpx.post(f"{standby_url}/jobs", json={"task": "add", "args": [4, 5]}, timeout=30)
    assert again.status_code == 201, again.text
    assert finished(standby_url, again.json()["id"])["result"] == 9


def test_a_standby_without_a_leader_answers_503_then_serves_once_one_leads(
    redis_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    """Another owner holds the lease and answers nothing: the node's API says so, then recovers."""
    journal = f"{redis_url}&lease=1"
    holder = RedisJournal.from_url(journal)
    try:
        node, url = serving(tmp_path, journal)
        nodes.append(node)
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert (ready.status_code, ready.json()["ready"]) == (503, False)

        refused = httpx.post(f"{url}/jobs", json={"task": "add", "args": [1, 1]}, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"].endswith("journal-unavailable")
        down = cli(url, "status", "some-job")
        assert down.returncode == 3, down.stderr
    finally:
        holder.close()
    assert wait_leader([node]) is node
    submitted = httpx.post(f"{url}/jobs", json={"task": "add", "args": [1, 1]}, timeout=30)
    assert submitted.status_code == 201, submitted.text
    assert finished(url, submitted.json()["id"])["result"] == 2
