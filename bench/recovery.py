"""Recovery of the Dispatcher: a long journal, and a snapshot of many live jobs.

    python -m bench.recovery [--events 1000000] [--live 100000] [--redis-url URL]

1. A journal of `--events` events (jobs submitted, started in batches of 32,
   succeeded: about 2.1 events per job), written as the Dispatcher would
   write it, then the time for an ActorSystem on it to recover (the
   Dispatcher's replay through `apply`, as reported by its observer).
2. A snapshot holding `--live` queued jobs, then the time to recover from it.
3. Bytes per job in the journal and in the snapshot.

Runs on the file journal, and on Redis when --redis-url is given (a
dedicated server is best: the benchmark writes a namespace of its own).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from actorq import ActorSystem
from actorq.core.events import Started, Submitted, Succeeded
from actorq.core.job import JobSpec, pack
from actorq.core.state import DispatcherState
from actorq.observe import SystemObserver
from actorq.persistence.codec import encode
from actorq.persistence.journal import Journal, Snapshot, open_journal

BATCH = 32


class RecoveryTimer(SystemObserver):
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.events: dict[str, int] = {}

    def recovered(self, persistence_id: str, events: int, seconds: float) -> None:
        self.seconds[persistence_id] = seconds
        self.events[persistence_id] = events


_NO_ARGS = pack([[], {}])
_NONE = pack(None)


def submitted(job_id: str, now: float) -> Submitted:
    return Submitted(JobSpec(id=job_id, task="noop", payload=_NO_ARGS), now, None)


def write_history(journal: Journal, events: int) -> int:
    """Append `events` events of finished jobs; returns the number of jobs."""
    seq, jobs, now = 0, 0, time.time()
    while seq < events:
        ids = [f"j{jobs + i}" for i in range(BATCH)]
        batch: list[Any] = [submitted(i, now) for i in ids]
        batch.append(Started("worker-1", ids, now))
        batch += [Succeeded(i, 1, _NONE, now) for i in ids]
        journal.append("dispatcher", batch, after_seq=seq)
        seq += len(batch)
        jobs += BATCH
    return jobs


def write_snapshot(journal: Journal, live: int) -> int:
    state = DispatcherState()
    now = time.time()
    for first in range(0, live, 1000):
        batch = [submitted(f"live{i}", now) for i in range(first, min(live, first + 1000))]
        journal.append("dispatcher", batch, after_seq=first)
        for event in batch:
            state.apply(event)
    data = state.to_snapshot()
    journal.save_snapshot("dispatcher", Snapshot(live, data))
    return len(encode(data))


def recover(spec: str) -> tuple[float, int]:
    timer = RecoveryTimer()
    system = ActorSystem(workers=1, journal=spec, observer=timer)
    system.task("noop")(lambda: None)
    started = time.perf_counter()
    with system:
        system.stats()  # answered once recovery is done
        wall = time.perf_counter() - started
    print(f"    (start to first answer: {wall:.2f} s)")
    return timer.seconds["dispatcher"], timer.events["dispatcher"]


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(label: str, make_spec: Any, events: int, live: int) -> None:
    spec = make_spec("history")
    journal = open_journal(spec)
    written = time.perf_counter()
    jobs = write_history(journal, events)
    written = time.perf_counter() - written
    journal.close()
    seconds, replayed = recover(spec)
    print(f"{label}: wrote {replayed:,} events ({jobs:,} jobs) in {written:.1f} s")
    print(f"  recovery of {replayed:,} events: {seconds:.2f} s")
    if isinstance(spec, str) and Path(spec).is_dir():
        print(f"  journal bytes per job: {size_of(Path(spec) / 'dispatcher') / jobs:.0f}")
    spec = make_spec("snapshot")
    journal = open_journal(spec)
    snapshot_bytes = write_snapshot(journal, live)
    journal.close()
    seconds, _ = recover(spec)
    print(f"  recovery from a snapshot of {live:,} live jobs: {seconds:.2f} s")
    print(f"  snapshot bytes per live job: {snapshot_bytes / live:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("file", lambda name: str(Path(tmp) / name), args.events, args.live)
    if args.redis_url:
        run_id = uuid.uuid4().hex[:8]
        run(
            "redis",
            lambda name: f"{args.redis_url}?namespace=bench-{run_id}-{name}",
            args.events,
            args.live,
        )


if __name__ == "__main__":
    main()
