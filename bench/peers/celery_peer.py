"""Celery peer (Redis broker, no result backend).

Worker configuration: `celery worker` with the default prefork pool and its default
concurrency, which the Workers Guide gives as "the number of CPUs available on the
machine": 2 processes here. Prefetch stays at the default multiplier (4). The Optimizing
guide says that for "many short-running tasks" the multiplier "should be large" (64 or
128); that is a tuning step beyond the recommended setup, taken for no other peer, so it
is left out and noted here. Logging is at WARNING, the CLI's default level.

Retry: `autoretry_for=(FirstAttemptError,)`, `max_retries=1`, `default_retry_delay=0`,
`retry_backoff=False`. Autoretry calls `Task.retry()` with countdown = default_retry_delay;
a countdown of 0 is falsy, so Celery publishes the retry with no ETA, straight to the queue.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from celery import Celery, Task

from bench.peers.common import (
    FirstAttemptError,
    JobSpec,
    PeerResult,
    WorkerSettings,
    run_job,
    worker_redis,
    worker_settings,
)
from bench.peers.workloads import run_workload

NAME = "celery"
REQUIREMENTS = ["celery[redis]==5.7.0", "redis==8.1.0"]


def _bench_job(done_key: str, attempt_key: str | None = None) -> None:
    run_job(worker_redis(), done_key, attempt_key)


def build(settings: WorkerSettings) -> tuple[Celery, Task]:
    celery_app = Celery("actorq_bench", broker=settings.redis_url, set_as_current=False)
    celery_app.conf.update(
        task_default_queue=settings.keys.queue,  # per-run queue (its list key is the name)
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )
    task = celery_app.task(
        name="bench_job",
        autoretry_for=(FirstAttemptError,),
        max_retries=1,
        default_retry_delay=0,
        retry_backoff=False,
    )(_bench_job)
    return celery_app, task


# Worker side: the CLI imports this module with the run's settings in the environment.
_settings = worker_settings()
if _settings is not None:
    app, _ = build(_settings)


class CeleryClient:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.app, self.task = build(settings)

    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        delay = self.task.delay
        for job in jobs:
            delay(job.done_key, job.attempt_key)

    def worker_argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "celery", "-A", f"{__name__}:app", "worker"),
            *("--pool", "prefork", "--loglevel", "WARNING"),
            *("--hostname", f"bench-{self.settings.run_id}@%h"),
        ]

    def close(self) -> None:
        self.app.close()


def run(redis_url: str, workload: str, n: int) -> PeerResult:
    return run_workload(NAME, CeleryClient, redis_url, workload, n)
