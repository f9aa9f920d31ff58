"""huey peer (`RedisHuey`, blocking dequeue, results off).

Worker configuration: `huey_consumer MODULE.huey -w 2 -k thread -n -q`. The consumer docs:
for `-w` "the default is 1 ... Even if you have a small workload, you will typically want
to increase this number to at least 2"; for `-k`, "process" is for CPU-heavy loads,
"greenlet" for I/O-heavy ones such as crawlers, and "Anything else: use 'thread' ... A safe
choice and the default". One Redis INCR per job is neither, so 2 thread workers. `-n`
(no periodic-task scheduling: the docs say to use it when not using periodic tasks) and
`-q` (errors only: per-job INFO lines off, as for every peer).
`RedisHuey` dequeues with a blocking BRPOP by default, so there is no polling backoff.

Retry: `@huey.task(retries=1, retry_delay=0)`; with no retry delay huey re-enqueues the
task directly instead of handing it to the scheduler.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from huey import RedisHuey
from huey.api import TaskWrapper

from bench.peers.common import (
    JobSpec,
    PeerResult,
    WorkerSettings,
    run_job,
    worker_redis,
    worker_settings,
)
from bench.peers.workloads import run_workload

NAME = "huey"
REQUIREMENTS = ["huey==3.5.4", "redis==8.1.0"]


def bench_job(done_key: str, attempt_key: str | None = None) -> None:
    run_job(worker_redis(), done_key, attempt_key)


def build(settings: WorkerSettings) -> tuple[RedisHuey, TaskWrapper]:
    # huey derives all its key names from `name` (letters and digits kept): per run.
    instance = RedisHuey(name=f"bench{settings.run_id}", url=settings.redis_url, results=False)
    task: Any = instance.task(retries=1, retry_delay=0)(bench_job)
    return instance, task


# Worker side: the consumer imports this module with the run's settings in the environment.
_settings = worker_settings()
if _settings is not None:
    huey, _ = build(_settings)


class HueyClient:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.huey, self.task = build(settings)

    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        task = self.task
        for job in jobs:
            task(job.done_key, job.attempt_key)

    def worker_argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "huey.bin.huey_consumer", f"{__name__}.huey"),
            *("-w", "2", "-k", "thread", "-n", "-q"),
        ]

    def close(self) -> None:
        self.huey.storage.conn.close()


def run(redis_url: str, workload: str, n: int) -> PeerResult:
    return run_workload(NAME, HueyClient, redis_url, workload, n)
