"""Dramatiq peer (Redis broker).

Worker configuration: Dramatiq's defaults, `dramatiq MODULE:broker` with 2 processes x 8
threads. Its CLI help: "--processes: the number of worker processes to run (default: the
number of CPUs)" and "--threads: the number of worker threads per process (default: 8)";
on this 2-core machine that is 2 x 8. Nothing in the docs asks for a change for small
I/O-bound jobs, so the defaults stand.

Retry: actor options `max_retries=1, min_backoff=0, max_backoff=0`. Dramatiq's backoff is
min_backoff * 2**retries (plus jitter), so a zero minimum is a zero delay; the Retries
middleware then re-enqueues the message with delay=0, which on the Redis broker goes
through the delay queue with an ETA of "now" (that hop is how Dramatiq retries).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers.common import (
    JobSpec,
    PeerResult,
    WorkerSettings,
    run_job,
    worker_redis,
    worker_settings,
)
from bench.peers.workloads import run_workload

NAME = "dramatiq"
REQUIREMENTS = ["dramatiq[redis]==2.2.1", "redis==8.1.0"]


def _bench_job(done_key: str, attempt_key: str | None = None) -> None:
    run_job(worker_redis(), done_key, attempt_key)


def build(settings: WorkerSettings) -> tuple[RedisBroker, dramatiq.Actor]:
    # The namespace prefixes every Dramatiq key with the run id; the queue name is per run too.
    broker = RedisBroker(url=settings.redis_url, namespace=f"bench-{settings.run_id}")
    actor = dramatiq.actor(
        _bench_job,
        broker=broker,
        actor_name="bench_job",
        queue_name=settings.keys.queue,
        max_retries=1,
        min_backoff=0,
        max_backoff=0,
    )
    return broker, actor


# Worker side: the CLI imports this module with the run's settings in the environment.
_settings = worker_settings()
if _settings is not None:
    broker, _ = build(_settings)


class DramatiqClient:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.broker, self.actor = build(settings)

    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        send = self.actor.send
        for job in jobs:
            send(job.done_key, job.attempt_key)

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "dramatiq", f"{__name__}:broker"]

    def close(self) -> None:
        self.broker.close()


def run(redis_url: str, workload: str, n: int) -> PeerResult:
    return run_workload(NAME, DramatiqClient, redis_url, workload, n)
