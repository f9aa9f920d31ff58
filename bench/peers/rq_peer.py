"""RQ peer.

Worker configuration: `rq worker-pool -n 2` with the default forking `Worker` class, i.e.
one worker per core. RQ's workers guide: "Each worker will process a single job at a time.
Within a worker, there is no concurrent processing going on. If you want to perform jobs
concurrently, simply start more workers", and its Worker Pool section offers
`rq worker-pool ... -n N` to run several from one command. The guide says `SimpleWorker`
(no fork per job, much faster for tiny jobs) "is not recommended for production use", so
the forking worker is kept, and with it RQ's fork-per-job cost.

Retry: `Retry(max=1, interval=0)`; an interval of 0 ("no interval between retries") makes
the worker put the failed job straight back on its queue instead of scheduling it.
Results: `result_ttl=0`, as the harness reads the done counter, not job results.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence

from redis import Redis
from rq import Queue, Retry, Worker

from bench.peers.common import JobSpec, PeerResult, WorkerSettings, run_job, worker_redis
from bench.peers.workloads import run_workload

NAME = "rq"
REQUIREMENTS = ["rq==3.0.0", "redis==8.1.0"]
WORKERS = 2


class PreloadedWorker(Worker):
    """The stock forking worker. Naming it with `--worker-class` makes the CLI import this
    module before it forks, which RQ's "Performance Notes" recommend ("import the necessary
    modules _before_ the fork"); otherwise every work horse imports it again."""


def bench_job(done_key: str, attempt_key: str | None = None) -> None:
    run_job(worker_redis(), done_key, attempt_key)


class RQClient:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.conn = Redis.from_url(settings.redis_url)
        self.queue = Queue(settings.keys.queue, connection=self.conn)
        self.retry = Retry(max=1, interval=0)
        # Job ids carry the run id so every rq:job:* key is found by the cleanup scan.
        self._ids = itertools.count()

    def enqueue(self, jobs: Sequence[JobSpec]) -> None:
        run_id = self.settings.run_id
        for job in jobs:
            self.queue.enqueue(
                bench_job,
                job.done_key,
                job.attempt_key,
                job_id=f"{run_id}-{next(self._ids)}",
                result_ttl=0,
                retry=self.retry if job.attempt_key else None,
            )

    def worker_argv(self) -> list[str]:
        return [
            *(sys.executable, "-m", "rq.cli", "worker-pool", "-n", str(WORKERS)),
            *("--worker-class", f"{__name__}.PreloadedWorker"),
            *("--url", self.settings.redis_url, "--logging-level", "WARNING"),
            self.settings.keys.queue,
        ]

    def close(self) -> None:
        # Keys named without the run id: the global queue index, and the stopped workers'
        # records (they would expire on their own within a minute).
        self.conn.srem("rq:queues", self.queue.key)
        for key in self.conn.scan_iter(match="rq:worker:*", count=1000, _type="hash"):
            if self.conn.hget(key, "queues") == self.queue.name.encode():
                self.conn.unlink(key)
        self.conn.close()


def run(redis_url: str, workload: str, n: int) -> PeerResult:
    return run_workload(NAME, RQClient, redis_url, workload, n)
