"""Workers on every node: grants over Redis, node leases, late results fenced at the leader."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from actorq import ActorSystem, Client, JobFailed, JobStatus, RestartPolicy
from tests.cluster import Node, start_node, wait_leader
from tests.helpers import wait_until

HOLDERS = 6  # the leader's 2 in-process workers, its node's 2 and the other node's 2


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


def ledger(directory: Path) -> list[tuple[str, str, int, int]]:
    """(kind, key, attempt, pid) for every line every node wrote."""
    lines = []
    for log in directory.glob("*.log"):
        for line in log.read_text().splitlines():
            kind, key, attempt, pid = line.split()
            lines.append((kind, key, int(attempt), int(pid)))
    return lines


@pytest.fixture
def cluster(redis_url: str, tmp_path: Path, nodes: list[Node]) -> tuple[Node, Node, Path, Path]:
    ledger_dir, flags = tmp_path / "ledger", tmp_path / "flags"
    ledger_dir.mkdir()
    flags.mkdir()
    journal = f"{redis_url}&lease=1"
    nodes.append(start_node(tmp_path, journal, ledger=ledger_dir))
    leader = wait_leader(nodes)
    nodes.append(start_node(tmp_path, journal, ledger=ledger_dir))
    other = nodes[1]
    wait_until(lambda: "runs 2 workers" in other.text(), timeout=30)
    return leader, other, ledger_dir, flags


def started_on(lines: list[tuple[str, str, int, int]], kind: str, pid: int) -> set[str]:
    return {key for k, key, _, p in lines if k == f"{kind}-start" and p == pid}


def test_a_node_that_stops_heart_beating_loses_its_jobs_and_its_late_results_are_refused(
    cluster: tuple[Node, Node, Path, Path], redis_url: str
) -> None:
    """Pause a node past its lease: its jobs run again elsewhere; its late answers are fenced."""
    leader, other, ledger_dir, flags = cluster
    with Client(redis_url) as client:
        jobs = [client.submit("hold", f"h{i}", str(flags)) for i in range(HOLDERS)]
        wait_until(lambda: len(ledger(ledger_dir)) == HOLDERS, timeout=30)
        theirs = started_on(ledger(ledger_dir), "hold", other.process.pid)
        assert theirs, "the other node ran none of the jobs"
        other.signal(signal.SIGSTOP)
        for i in range(HOLDERS):
            if f"h{i}" not in theirs:
                (flags / f"h{i}").touch()
        wait_until(
            lambda: (
                {k for k, key, a, p in ledger(ledger_dir) if k == "hold-start" and a == 2}
                and {key for k, key, a, _ in ledger(ledger_dir) if k == "hold-start" and a == 2}
                == theirs
            ),
            timeout=30,
        )
        for key in theirs:
            (flags / key).touch()
        results = {job.id: job.result(timeout=30) for job in jobs}
        assert set(results.values()) == {leader.process.pid}
        other.signal(signal.SIGCONT)
        wait_until(lambda: "joining again" in other.text(), timeout=30)
        wait_until(
            lambda: (
                {
                    key
                    for k, key, _, p in ledger(ledger_dir)
                    if k == "hold-end" and p == other.process.pid
                }
                == theirs
            ),
            timeout=30,
        )
        assert client.submit("add", 1, 1).result(timeout=30) == 2
        for job in jobs:
            info = client.job(job.id)
            assert info.status is JobStatus.SUCCEEDED
            assert info.result == leader.process.pid  # not the paused node's late answer
            if job.id in theirs:
                assert info.attempts == 2


def test_at_most_once_jobs_of_a_killed_node_are_dead_lettered_as_lost(
    cluster: tuple[Node, Node, Path, Path], redis_url: str
) -> None:
    """SIGKILL a node running at-most-once jobs: they end dead, never run a second time."""
    leader, other, ledger_dir, flags = cluster
    with Client(redis_url) as client:
        jobs = {f"a{i}": client.submit("hold_amo", f"a{i}", str(flags)) for i in range(HOLDERS)}
        wait_until(lambda: len(ledger(ledger_dir)) == HOLDERS, timeout=30)
        theirs = started_on(ledger(ledger_dir), "hold_amo", other.process.pid)
        assert theirs
        other.kill()
        for key in jobs:
            (flags / key).touch()
        for key, job in jobs.items():
            if key in theirs:
                with pytest.raises(JobFailed, match="lost"):
                    job.result(timeout=30)
            else:
                assert job.result(timeout=30) == leader.process.pid
        assert {d.id for d in client.dead_letters()} == {jobs[k].id for k in theirs}
    starts = [key for k, key, _, _ in ledger(ledger_dir) if k == "hold_amo-start"]
    assert sorted(starts) == sorted(jobs)  # each ran once


def test_a_job_that_keeps_killing_its_worker_is_dead_lettered_after_a_bound() -> None:
    """A worker dying under the same job twice sends it to the dead letters, whatever its policy."""
    system = ActorSystem(workers=1)

    @system.task("killer", policy=RestartPolicy(max_restarts=10))
    def killer() -> None:
        raise SystemExit("takes its worker down")

    with system:
        job = system.submit("killer")
        with pytest.raises(JobFailed, match="stalled 2 times"):
            job.result(timeout=30)
        assert system.job(job.id).attempts == 2
