"""Workload 5: recovery time and peak memory of actorq with many jobs queued.

    python -m bench.queued --jobs 1000000 --journal file|redis [--redis-url URL]

A first process writes the journal as a Dispatcher would after `--jobs`
submissions (batches of 1,000, the way group commit writes them) and exits;
a second, fresh process starts an ActorSystem on it and reports how long the
Dispatcher's recovery took and the process's peak resident memory. One JSON
line on stdout: {"jobs", "journal", "recovery_s", "ready_s", "peak_rss_mib"}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from actorq import ActorSystem
from actorq.core.events import Submitted
from actorq.core.job import JobSpec, pack
from actorq.observe import SystemObserver
from actorq.persistence.journal import open_journal

BATCH = 1000


class _Recovery(SystemObserver):
    seconds = 0.0

    def recovered(self, persistence_id: str, events: int, seconds: float) -> None:
        if persistence_id == "dispatcher":
            self.seconds = seconds


def write(spec: str, jobs: int) -> None:
    journal = open_journal(spec)
    now = time.time()
    for first in range(0, jobs, BATCH):
        batch = [
            Submitted(JobSpec(id=f"q{i}", task="noop", payload=pack([[i], {}])), now, None)
            for i in range(first, min(jobs, first + BATCH))
        ]
        journal.append("dispatcher", batch, after_seq=first)
    journal.close()


def recover(spec: str) -> dict[str, float]:
    observer = _Recovery()
    system = ActorSystem(workers=1, journal=spec, observer=observer)
    system.task("noop")(lambda i: None)
    started = time.perf_counter()
    system.start()
    system.pause()  # answered once recovery is done; the jobs stay queued
    ready = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    system.stop(timeout=5)
    return {"recovery_s": observer.seconds, "ready_s": ready, "peak_rss_mib": peak}


def measure(journal: str, jobs: int, redis_url: str | None = None) -> dict[str, float | str]:
    """Write in one process, recover in a fresh one; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="actorq-queued-") as folder:
        if journal == "file":
            spec = str(Path(folder) / "journal")
        else:
            spec = f"{redis_url}?namespace=actorq-queued-{uuid.uuid4().hex[:8]}&claim_wait=15"
        base = [sys.executable, "-m", "bench.queued", "--spec", spec, "--jobs", str(jobs)]
        subprocess.run([*base, "--phase", "write"], check=True)
        done = subprocess.run(
            [*base, "--phase", "recover"], check=True, capture_output=True, text=True
        )
        figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {"jobs": jobs, "journal": journal, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--journal", choices=("file", "redis"), default="file")
    parser.add_argument("--redis-url")
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("write", "recover"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "write":
        write(args.spec, args.jobs)
    elif args.phase == "recover":
        print(json.dumps(recover(args.spec)))
    else:
        print(json.dumps(measure(args.journal, args.jobs, args.redis_url)))


if __name__ == "__main__":
    main()
