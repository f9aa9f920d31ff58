"""arq peer.

Worker configuration: one `arq` worker process with arq's defaults (max_jobs=10 concurrent
jobs on one asyncio loop, poll_delay=0.5 s, queue_read_limit=max(max_jobs*5, 100)). arq's
docs describe the worker as a single asyncio process and give no per-core advice, so the
documented defaults are used unchanged; the harness just starts one worker. Note that arq
finds work by polling its queue every `poll_delay` ("duration between polling the queue
for new jobs"), which bounds both its latency and its drain rate.
Per-job INFO log lines are turned off with `--custom-log-dict` (WARNING), as for every
peer; results are not kept (`keep_result=0`): the harness reads the done counter.

Retry: arq retries only jobs that raise `arq.worker.Retry` ("Special exception to retry
the job"), so the first-attempt failure is re-raised as `Retry(defer=0)`: a zero defer
adds nothing to the job's score and it is eligible on the very next poll. max_tries=2.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Retry

from bench.peers.common import (
    FirstAttemptError,
    JobSpec,
    PeerResult,
    WorkerSettings,
    run_job_async,
    worker_settings,
)
from bench.peers.workloads import run_workload

NAME = "arq"
REQUIREMENTS = ["arq==0.28.0", "redis==5.3.1"]  # arq 0.28 requires redis<6

LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def bench_job(ctx: dict[str, Any], done_key: str, attempt_key: str | None = None) -> None:
    try:
        await run_job_async(ctx["redis"], done_key, attempt_key)
    except FirstAttemptError as exc:
        raise Retry(defer=0) from exc


def worker_class(settings: WorkerSettings) -> type:
    """arq's CLI takes a settings class; its attributes are Worker keyword arguments."""
    return type(
        "ArqWorkerSettings",
        (),
        {
            "functions": [bench_job],
            "redis_settings": RedisSettings.from_dsn(settings.redis_url),
            "queue_name": settings.keys.queue,
            "keep_result": 0,
            "max_tries": 2,
        },
    )


# Worker side: the CLI imports this module with the run's settings in the environment.
_settings = worker_settings()
if _settings is not None:
    ArqWorkerSettings = worker_class(_settings)


class ArqClient:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._loop = asyncio.Runner()
        self._pool: ArqRedis = self._loop.run(
            create_pool(
                RedisSettings.from_dsn(settings.redis_url), default_queue_name=settings.keys.queue
            )
        )
        # arq keys jobs by id (arq:job:<id> ...); ids carrying the run id are found by cleanup.
        self._ids = itertools.count()

    async def _enqueue(self, jobs: Sequence[JobSpec]) -> None:
        run_id = self.settings.run_id
        for job in jobs:  # awaited one by one: a single sequential producer, like the others
            await self._pool.enqueue_job(
                "bench_job", job.done_key, job.attempt_key, _job_id=f"{run_id}-{next(self._ids)}"
            )

    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        self._loop.run(self._enqueue(jobs))

    def worker_argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "arq", f"{__name__}.ArqWorkerSettings"),
            *("--custom-log-dict", f"{__name__}.LOG_CONFIG"),
        ]

    def close(self) -> None:
        self._loop.run(self._pool.aclose())
        self._loop.close()


def run(redis_url: str, workload: str, n: int) -> PeerResult:
    return run_workload(NAME, ArqClient, redis_url, workload, n)
