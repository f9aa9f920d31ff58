"""Several node processes on one namespace: one leader, failover, fencing of a paused leader."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from actorq import Client, JobFailed, JobStatus
from tests.cluster import Node, start_node, wait_leader
from tests.helpers import wait_until
from tests.redis_server import RedisServer

JOBS = 300


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


def ledger_counts(ledger: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for log in ledger.glob("*.log"):
        for line in log.read_text().splitlines():
            kind, key, _attempt, _pid = line.split()
            counts[f"{kind} {key}"] += 1
    return counts


def writers(redis_url: str) -> list[str]:
    """The owner token of every journal batch of the Dispatcher, in sequence order."""
    namespace = redis_url.partition("namespace=")[2]
    raw = redis.Redis.from_url(redis_url.partition("?")[0])
    entries: Any = raw.xrange(f"{namespace}:journal:dispatcher")
    return [fields[b"by"].decode() for _, fields in entries]


def test_failover_after_sigkill_and_a_paused_leader_that_wakes_up_fenced(
    redis_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    """Kill the leader mid-run, then a worker node, then pause the new leader past its lease."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    journal = f"{redis_url}&lease=1"
    nodes.extend(start_node(tmp_path, journal, ledger=ledger) for _ in range(4))
    first = wait_leader(nodes)

    acknowledged: dict[str, str] = {}  # job id -> "kind key"
    third_in, two_thirds_in = threading.Event(), threading.Event()

    def produce() -> None:
        with Client(redis_url) as client:
            for i in range(JOBS):
                kind = "amo" if i % 3 == 0 else "alo"
                job = client.submit(kind, f"k{i}", idempotency_key=f"k{i}")
                acknowledged[job.id] = f"{kind} k{i}"
                if i == JOBS // 3:
                    third_in.set()
                if i == 2 * JOBS // 3:
                    two_thirds_in.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert third_in.wait(60)
    first.kill()
    second = wait_leader([n for n in nodes if n is not first])
    second_token = second.token()
    worker_node = next(n for n in nodes if n not in (first, second))
    worker_node.kill()

    assert two_thirds_in.wait(60)
    second.signal(signal.SIGSTOP)
    third = wait_leader([n for n in nodes if n not in (first, second, worker_node)])
    third_token = third.token()
    second.signal(signal.SIGCONT)
    wait_until(lambda: "standing by again" in second.text(), timeout=30)

    producer.join(120)
    assert not producer.is_alive()
    assert len(acknowledged) == JOBS

    with Client(redis_url) as client:
        for job_id, what in acknowledged.items():
            try:
                assert client.result(job_id, timeout=60) == what.split()[1]
            except JobFailed:
                assert what.startswith("amo")  # lost in a crash: dead-lettered, not re-run
            assert client.job(job_id).status in (JobStatus.SUCCEEDED, JobStatus.DEAD)

    counts = ledger_counts(ledger)
    assert all(counts[what] <= 1 for what in acknowledged.values() if what.startswith("amo"))
    assert all(counts[what] >= 1 for what in acknowledged.values() if what.startswith("alo"))

    by = writers(redis_url)
    assert second_token in by and third_token in by
    assert max(i for i, t in enumerate(by) if t == second_token) < by.index(third_token)


def test_a_result_waited_for_arrives_across_a_failover(
    redis_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    """A Client blocked in result() gets the outcome the next leader publishes."""
    flags = tmp_path / "flags"
    flags.mkdir()
    journal = f"{redis_url}&lease=1"
    nodes.extend(start_node(tmp_path, journal) for _ in range(2))
    first = wait_leader(nodes)
    with Client(redis_url) as client:
        job = client.submit("hold", "across", str(flags))
        outcome: list[Any] = []
        waiter = threading.Thread(target=lambda: outcome.append(job.result(timeout=60)))
        waiter.start()
        first.kill()
        second = wait_leader([n for n in nodes if n is not first])
        (flags / "across").touch()
        waiter.join(60)
        assert outcome == [second.process.pid]  # the killed leader could not have run it
        assert client.job(job.id).status is JobStatus.SUCCEEDED


def test_a_node_outlives_a_redis_outage_and_leads_again(tmp_path: Path, nodes: list[Node]) -> None:
    """Redis away past the lease: the leader steps down, stands by, and leads once it is back."""
    server = RedisServer()  # its own: the test kills it
    try:
        url = f"{server.url}?namespace=outage"
        nodes.append(start_node(tmp_path, f"{url}&lease=1"))
        node = wait_leader(nodes)
        with Client(url) as client:
            before = client.submit("add", 1, 2)
            assert before.result(timeout=30) == 3
        server.kill()
        wait_until(lambda: "stepping down" in node.text(), timeout=30)
        server.start()
        wait_leader(nodes)
        with Client(url) as client:
            assert client.submit("add", 2, 2).result(timeout=30) == 4
            assert client.job(before.id).status is JobStatus.SUCCEEDED
        assert node.process.poll() is None
    finally:
        server.stop()
