"""Journal recovery: how long replaying a million events takes, and what they cost on disk.

    python -m bench.journal_recovery [--batches 10000] [--batch-size 100]
        [--backend file --backend redis] [--fsync always|batch|never] [--redis-url URL]

Writes `batches` appends of `batch-size` small events (a group commit each),
then opens a fresh journal on the same storage and times a full recovery:
opening, `last_seq` and a complete `replay`. Bytes per event are the segment
files for the file backend, and the append-only file (fsync always) plus
Redis's own MEMORY USAGE of the stream for Redis (the append-only file is
smaller than the data once Redis has rewritten it into its compressed RDB
preamble, which it does past 64 MiB). Without --redis-url a
private redis-server is started (tests/redis_server.py).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from actorq.persistence.codec import event_type
from actorq.persistence.file import FileJournal
from actorq.persistence.journal import Journal
from actorq.persistence.redis import RedisJournal

PID = "dispatcher"


@event_type("bench.journal.submitted", 1)
@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    task: str
    attempt: int


def write(journal: Journal, batches: int, size: int) -> float:
    started = time.perf_counter()
    for b in range(batches):
        events = [Submitted(f"job-{b * size + i:08d}", "tasks.noop", 1) for i in range(size)]
        journal.append(PID, events, after_seq=b * size)
    return time.perf_counter() - started


def recover(open_journal: Callable[[], Journal], expected: int) -> float:
    started = time.perf_counter()
    journal = open_journal()
    last = journal.last_seq(PID)
    count = 0
    for _seq, _event in journal.replay(PID):
        count += 1
    elapsed = time.perf_counter() - started
    journal.close()
    assert last == count == expected, (last, count, expected)
    return elapsed


def report(name: str, events: int, wrote: float, recovered: float, sizes: dict[str, int]) -> None:
    print(f"{name}:")
    print(f"  write   {wrote:7.2f} s  ({events / wrote:,.0f} events/s)")
    print(f"  recover {recovered:7.2f} s  ({events / recovered:,.0f} events/s)")
    for what, size in sizes.items():
        print(f"  {what:<26} {size / events:6.1f} bytes/event  ({size / 2**20:.1f} MiB)")


def bench_file(batches: int, size: int, fsync: str) -> None:
    with tempfile.TemporaryDirectory(prefix="actorq-bench-") as tmp:
        journal = FileJournal(tmp, fsync=fsync)  # type: ignore[arg-type]
        wrote = write(journal, batches, size)
        journal.close()
        on_disk = sum(p.stat().st_size for p in Path(tmp).rglob("*.seg"))
        recovered = recover(lambda: FileJournal(tmp), batches * size)
    report(f"file (fsync={fsync})", batches * size, wrote, recovered, {"segments": on_disk})


def bench_redis(batches: int, size: int, url: str | None) -> None:
    server = None
    if url is None:
        from tests.redis_server import RedisServer

        server = RedisServer()
        url = server.url
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    stream = f"{namespace}:journal:{PID}"
    journal_url = f"{url}?namespace={namespace}"
    inspector = redis.Redis.from_url(url)
    try:
        journal = RedisJournal.from_url(journal_url)
        wrote = write(journal, batches, size)
        journal.close()
        sizes = {"MEMORY USAGE of the stream": int(inspector.memory_usage(stream, samples=0) or 0)}
        if server is not None:
            aof = server.directory / "appendonlydir"
            sizes["append-only file"] = sum(p.stat().st_size for p in aof.iterdir())
        recovered = recover(lambda: RedisJournal.from_url(journal_url), batches * size)
    finally:
        inspector.delete(stream, f"{namespace}:last:{PID}")
        inspector.close()
        if server is not None:
            server.stop()
    report("redis", batches * size, wrote, recovered, sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--backend", action="append", choices=["file", "redis"])
    parser.add_argument("--fsync", default="always", choices=["always", "batch", "never"])
    parser.add_argument("--redis-url", help="an existing server (default: start one)")
    args = parser.parse_args()
    print(f"{args.batches:,} appends x {args.batch_size} events\n")
    for backend in args.backend or ["file", "redis"]:
        if backend == "file":
            bench_file(args.batches, args.batch_size, args.fsync)
        else:
            bench_redis(args.batches, args.batch_size, args.redis_url)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
