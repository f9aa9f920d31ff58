"""The four workloads, written once against a small per-peer client so they stay identical.

A peer module supplies a `PeerClient`: how to enqueue jobs, and the argv of its worker.
Everything else (timing, starting the worker, polling the done counter, cleanup) is here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import redis

from bench.peers import WORKLOADS
from bench.peers.common import (
    UNITS,
    JobSpec,
    PeerResult,
    WorkerProcess,
    WorkerSettings,
    delete_run_keys,
    percentile,
    wait_for_count,
)

# Throughput runs poll every 5 ms: <0.1% of a 20k-job drain, and light on the 2 cores.
THROUGHPUT_POLL_S = 0.005
# Latency runs poll every 0.2 ms: that plus one GET round trip is the timing resolution.
LATENCY_POLL_S = 0.0002
WARMUP_TIMEOUT_S = 120.0


class PeerClient(Protocol):
    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        """Enqueue the jobs one by one, in order, from this (single) producer."""

    def worker_argv(self) -> list[str]:
        """The worker command: the peer's own CLI, run with this venv's interpreter."""

    def close(self) -> None:
        """Release connections; remove run state that `delete_run_keys` cannot find."""


# A client may set `stop_grace_s` to shorten the SIGTERM-to-SIGKILL wait of its worker.
DEFAULT_STOP_GRACE_S = 15.0


ClientFactory = Callable[[WorkerSettings], PeerClient]


def throughput_timeout(n: int) -> float:
    # Generous: only a hung or broken peer should hit it. The floor is 20 jobs/s, as RQ's
    # forking workers run only 20-60 jobs/s on this machine.
    return 60.0 + n / 20.0


def _worker(client: PeerClient, s: WorkerSettings) -> WorkerProcess:
    grace = float(getattr(client, "stop_grace_s", DEFAULT_STOP_GRACE_S))
    return WorkerProcess(client.worker_argv(), s, stop_grace_s=grace)


def run_workload(
    system: str, factory: ClientFactory, redis_url: str, workload: str, n: int
) -> PeerResult:
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    if n < 1:
        raise ValueError("n must be positive")
    settings = WorkerSettings(redis_url, secrets.token_hex(6))
    conn = redis.Redis.from_url(redis_url)
    client = factory(settings)
    try:
        runner = _RUNNERS[workload]
        value, extra = runner(client, conn, settings, n)
    finally:
        client.close()
        delete_run_keys(conn, settings.run_id)
        conn.close()
    extra = {"n": n, "run_id": settings.run_id, **extra}
    return PeerResult(system, workload, value, UNITS[workload], extra)


Extra = dict[str, Any]


def _enqueue(
    client: PeerClient, conn: redis.Redis, s: WorkerSettings, n: int
) -> tuple[float, Extra]:
    jobs = [JobSpec(s.keys.done)] * n
    start = time.perf_counter()
    client.enqueue(jobs)
    seconds = time.perf_counter() - start
    return n / seconds, {"seconds": seconds}


def _drain(client: PeerClient, conn: redis.Redis, s: WorkerSettings, n: int) -> tuple[float, Extra]:
    """Rate from the first completion to the last; worker boot is reported beside it.

    Every system is timed the same way, whatever its start-up: a peer's worker
    boots a fresh interpreter, actorq's embedded workers are already up.
    """
    client.enqueue([JobSpec(s.keys.done)] * n)
    worker = _worker(client, s)
    start = time.perf_counter()
    with worker:
        done = wait_for_count(
            conn,
            s.keys.done,
            n,
            timeout_s=throughput_timeout(n),
            poll_s=THROUGHPUT_POLL_S,
            alive=worker.alive,
        )
    return drain_figures(start, done.first_at, done.done_at, n, int(conn.get(s.keys.done) or 0))


def drain_figures(
    start: float, first_at: float | None, done_at: float, n: int, final_count: int
) -> tuple[float, Extra]:
    """(jobs/s from first to last completion, extra figures) for a drain run."""
    first = first_at if first_at is not None else start
    # n - 1 completions happen after the first one is seen.
    rate = max(n - 1, 1) / max(done_at - first, 1e-9)
    extra: Extra = {
        "seconds": done_at - first,
        "startup_s": first - start,
        "with_startup_rate": n / max(done_at - start, 1e-9),
        "final_count": final_count,
    }
    return rate, extra


def _latency(
    client: PeerClient, conn: redis.Redis, s: WorkerSettings, n: int
) -> tuple[float, Extra]:
    worker = _worker(client, s)
    latencies: list[float] = []
    with worker:
        _warm_up(client, conn, s, worker)
        for i in range(n):
            start = time.perf_counter()
            client.enqueue([JobSpec(s.keys.done)])
            done = wait_for_count(
                conn, s.keys.done, i + 1, timeout_s=30.0, poll_s=LATENCY_POLL_S, alive=worker.alive
            )
            latencies.append((done.done_at - start) * 1000.0)
    extra: Extra = {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": sum(latencies) / n,
        "max_ms": max(latencies),
    }
    return extra["p50_ms"], extra


def _retry(client: PeerClient, conn: redis.Redis, s: WorkerSettings, n: int) -> tuple[float, Extra]:
    jobs = [JobSpec(s.keys.done, s.keys.attempt(i)) for i in range(n)]
    worker = _worker(client, s)
    with worker:
        _warm_up(client, conn, s, worker)
        start = time.perf_counter()
        client.enqueue(jobs)
        enqueued = time.perf_counter()
        done = wait_for_count(
            conn,
            s.keys.done,
            n,
            timeout_s=throughput_timeout(n),
            poll_s=THROUGHPUT_POLL_S,
            alive=worker.alive,
        )
    seconds = done.done_at - start
    # Every job must have run exactly twice: once failing, once succeeding.
    attempts = sum(int(v or 0) for v in conn.mget([s.keys.attempt(i) for i in range(n)]))
    extra: Extra = {
        "seconds": seconds,
        "enqueue_s": enqueued - start,
        "attempts": attempts,
        "final_count": int(conn.get(s.keys.done) or 0),
    }
    return n / seconds, extra


def _warm_up(
    client: PeerClient, conn: redis.Redis, s: WorkerSettings, worker: WorkerProcess
) -> None:
    """Run one job on a separate counter so the worker is booted and connected before timing."""
    client.enqueue([JobSpec(s.keys.warm)])
    wait_for_count(
        conn, s.keys.warm, 1, timeout_s=WARMUP_TIMEOUT_S, poll_s=0.01, alive=worker.alive
    )


Runner = Callable[[PeerClient, redis.Redis, WorkerSettings, int], tuple[float, Extra]]
_RUNNERS: dict[str, Runner] = {
    "enqueue": _enqueue,
    "drain": _drain,
    "latency": _latency,
    "retry": _retry,
}
