"""actorq on the peer workloads: same job body, same Redis, same timing rules.

The job body is the peers' (`bench.peers.common.run_job`): one Redis INCR on
the run's done counter, and for the retry workload an INCR of a per-job
attempt key that fails the first attempt. Completion is learnt the way the
peers' is, by polling that counter.

actorq is embedded, so its "worker start" for the drain workload is
`resume()` of a system that was paused while the jobs were submitted (its
actor threads are already up, as a peer's worker would be after boot; the
peers' figures also give the rate after their first completion).
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from actorq import ActorSystem, Backoff, RestartPolicy
from bench.peers import workloads as timing
from bench.peers.common import (
    UNITS,
    PeerResult,
    RunKeys,
    percentile,
    run_job,
    wait_for_count,
)

JOURNALS = ("memory", "file", "redis")


@contextmanager
def actorq_system(journal: str, redis_url: str, run_id: str) -> Iterator[ActorSystem]:
    with tempfile.TemporaryDirectory(prefix="actorq-bench-") as folder:
        spec = {
            "memory": "memory",
            "file": folder,
            "redis": f"{redis_url}?namespace=actorq-bench-{run_id}",
        }[journal]
        client = redis.Redis.from_url(redis_url)
        system = ActorSystem(
            workers=4,
            journal=spec,
            policy=RestartPolicy(max_restarts=3, backoff=Backoff.none()),
        )

        @system.task("job")
        def job(done_key: str, attempt_key: str | None = None) -> None:
            run_job(client, done_key, attempt_key)

        with system:
            yield system
        client.close()


def run_actorq(journal: str, workload: str, n: int, redis_url: str) -> PeerResult:
    run_id = secrets.token_hex(6)
    keys = RunKeys(run_id)
    conn = redis.Redis.from_url(redis_url)
    try:
        with actorq_system(journal, redis_url, run_id) as system:
            value, extra = _RUNS[workload](system, conn, keys, n)
    finally:
        conn.delete(keys.done, *[keys.attempt(i) for i in range(n if workload == "retry" else 0)])
        conn.close()
    return PeerResult(f"actorq ({journal})", workload, value, UNITS[workload], {"n": n, **extra})


Extra = dict[str, float]


def _enqueue(system: ActorSystem, conn: redis.Redis, keys: RunKeys, n: int) -> tuple[float, Extra]:
    system.pause()  # measure the producer alone, as the peers' enqueue does
    started = time.perf_counter()
    for _ in range(n):
        system.submit("job", keys.done)
    seconds = time.perf_counter() - started
    system.resume()
    assert system.join(timing.throughput_timeout(n))
    return n / seconds, {"seconds": seconds}


def _drain(system: ActorSystem, conn: redis.Redis, keys: RunKeys, n: int) -> tuple[float, Extra]:
    system.pause()
    system.submit_many("job", [(keys.done,)] * n)
    started = time.perf_counter()
    system.resume()
    done = wait_for_count(
        conn, keys.done, n, timeout_s=timing.throughput_timeout(n), poll_s=timing.THROUGHPUT_POLL_S
    )
    return timing.drain_figures(
        started, done.first_at, done.done_at, n, int(conn.get(keys.done) or 0)
    )


def _pipeline(system: ActorSystem, conn: redis.Redis, keys: RunKeys, n: int) -> tuple[float, Extra]:
    """The enqueue workload through `system.pipeline()`: every job durable at the clock's stop."""
    system.pause()  # measure the producer alone, as the peers' enqueue does
    started = time.perf_counter()
    with system.pipeline() as pipe:
        for _ in range(n):
            pipe.submit("job", keys.done)
    seconds = time.perf_counter() - started
    system.resume()
    assert system.join(timing.throughput_timeout(n))
    return n / seconds, {"seconds": seconds}


def _latency(system: ActorSystem, conn: redis.Redis, keys: RunKeys, n: int) -> tuple[float, Extra]:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        system.submit("job", keys.done)
        done = wait_for_count(conn, keys.done, i + 1, timeout_s=30, poll_s=timing.LATENCY_POLL_S)
        latencies.append((done.done_at - started) * 1000)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return p50, {"p50_ms": p50, "p99_ms": p99, "max_ms": max(latencies)}


def _retry(system: ActorSystem, conn: redis.Redis, keys: RunKeys, n: int) -> tuple[float, Extra]:
    started = time.perf_counter()
    for i in range(n):  # one producer, one submission at a time, as the peers enqueue
        system.submit("job", keys.done, keys.attempt(i))
    done = wait_for_count(
        conn, keys.done, n, timeout_s=timing.throughput_timeout(n), poll_s=timing.THROUGHPUT_POLL_S
    )
    seconds = done.done_at - started
    attempts = sum(int(v or 0) for v in conn.mget([keys.attempt(i) for i in range(n)]))
    return n / seconds, {"seconds": seconds, "attempts": attempts}


_RUNS: dict[str, Callable[[ActorSystem, redis.Redis, RunKeys, int], tuple[float, Extra]]] = {
    "enqueue": _enqueue,
    "drain": _drain,
    "pipeline": _pipeline,
    "latency": _latency,
    "retry": _retry,
}
