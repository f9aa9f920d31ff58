"""taskiq peer with taskiq-redis's `RedisStreamBroker`.

Broker: the stream broker is the one taskiq-redis's README shows first and the one it marks
as supporting acknowledgements ("fine to use in cases when data durability is required");
the list and pub/sub brokers would lose a job on a worker crash. No result backend: the
harness reads the done counter.
Worker configuration: `taskiq worker MODULE:broker` with its defaults, which are
`--workers 2` (worker processes) and `--max-async-tasks 100` per process; two processes
also match the two cores. Log level WARNING (`--log-level`), as for every peer.

Retry: `SimpleRetryMiddleware`, which re-kicks a failed task at once (no delay; the
delaying variant is `SmartRetryMiddleware`). Its count is checked as
`retries < max_retries` after incrementing, so `max_retries=2` means one retry.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from taskiq import AsyncTaskiqDecoratedTask, SimpleRetryMiddleware
from taskiq_redis import RedisStreamBroker

from bench.peers.common import (
    ENV_REDIS_URL,
    JobSpec,
    PeerResult,
    WorkerSettings,
    run_job_async,
    worker_settings,
)
from bench.peers.workloads import run_workload

NAME = "taskiq"
REQUIREMENTS = ["taskiq==0.13.0", "taskiq-redis==1.2.4", "redis==8.1.0"]

_client: redis.asyncio.Redis | None = None


async def _bench_job(done_key: str, attempt_key: str | None = None) -> None:
    global _client  # noqa: PLW0603 - one client per worker process, made inside its loop
    if _client is None:
        _client = redis.asyncio.Redis.from_url(os.environ[ENV_REDIS_URL])
    await run_job_async(_client, done_key, attempt_key)


def build(settings: WorkerSettings) -> tuple[RedisStreamBroker, AsyncTaskiqDecoratedTask[Any, Any]]:
    # The stream's key is the per-run queue name. The consumer group is created by
    # startup() on the producer side too, before anything is sent, so a worker started
    # later (the drain workload) still reads the jobs already in the stream.
    broker = RedisStreamBroker(url=settings.redis_url, queue_name=settings.keys.queue)
    broker = broker.with_middlewares(SimpleRetryMiddleware(default_retry_count=2))
    task = broker.register_task(
        _bench_job, task_name="bench_job", retry_on_error=True, max_retries=2
    )
    return broker, task


# Worker side: the CLI imports this module with the run's settings in the environment.
_settings = worker_settings()
if _settings is not None:
    broker, _ = build(_settings)


class TaskiqClient:
    # taskiq 0.13's worker processes log "Stopping prefetching messages..." on SIGTERM but
    # do not exit (compare taskiq issue #646, a child that stays alive after its broker shut
    # down). All jobs are done by then, so the worker is SIGKILLed after a short grace.
    stop_grace_s = 3.0

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.broker, self.task = build(settings)
        self._loop = asyncio.Runner()
        self._loop.run(self.broker.startup())

    async def _enqueue(self, jobs: Sequence[JobSpec]) -> None:
        kiq = self.task.kiq
        for job in jobs:  # awaited one by one: a single sequential producer, like the others
            await kiq(job.done_key, job.attempt_key)

    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        self._loop.run(self._enqueue(jobs))

    def worker_argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "taskiq", "worker", f"{__name__}:broker"),
            *("--log-level", "WARNING"),
        ]

    def close(self) -> None:
        self._loop.run(self.broker.shutdown())
        self._loop.close()


def run(redis_url: str, workload: str, n: int) -> PeerResult:
    return run_workload(NAME, TaskiqClient, redis_url, workload, n)
