"""The everyday submit path, against ThreadPoolExecutor and the disk, in one run.

    python -m bench.submit [--dir DIR] [--jobs 20000]

Figures, each a ratio to a reference measured in the same run:
- memory journal, one producer calling submit() per job, no-op jobs end to
  end, against ThreadPoolExecutor(4).submit in a loop on the same calls;
- file journal (fsync always), one producer calling submit() per job,
  against the raw rate of 200-byte write + fdatasync on the same disk;
- file journal, 8 producer threads, against the single producer;
- file journal, system.pipeline(), against the single producer;
- head of line: one slow job running on 4 workers, quick jobs submitted one
  by one: the wait from submit to start, p50 and p99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from actorq import ActorSystem
from bench.core import threaded_noop


def noop() -> None:
    return None


def system(journal: str) -> ActorSystem:
    s = ActorSystem(workers=4, journal=journal)
    s.task("noop")(noop)
    return s


def threadpool(n: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(noop) for _ in range(n)]
        for f in futures:
            f.result()
    return n / (time.perf_counter() - started)


def single(journal: str, n: int) -> float:
    with system(journal) as s:
        started = time.perf_counter()
        for _ in range(n):
            s.submit("noop")
        assert s.join(300)
        return n / (time.perf_counter() - started)


def producers(journal: str, n: int, threads: int = 8) -> float:
    with system(journal) as s:
        return threaded_noop(s, threads, n)


def pipeline(journal: str, n: int) -> float:
    with system(journal) as s:
        started = time.perf_counter()
        with s.pipeline() as p:
            for _ in range(n):
                p.submit("noop")
        assert s.join(300)
        return n / (time.perf_counter() - started)


def raw_fsync(directory: str, n: int) -> float:
    path = Path(directory) / "raw.bin"
    record = os.urandom(200)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        started = time.perf_counter()
        for _ in range(n):
            os.write(fd, record)
            os.fdatasync(fd)
        return n / (time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()


def head_of_line(n: int = 400) -> tuple[float, float]:
    s = ActorSystem(workers=4, journal="memory")
    release = threading.Event()
    starts: dict[int, float] = {}

    @s.task("slow")
    def slow() -> None:
        release.wait(60)

    @s.task("quick")
    def quick(i: int) -> None:
        starts[i] = time.perf_counter()

    with s:
        s.submit("slow")
        submitted = {}
        for i in range(n):
            submitted[i] = time.perf_counter()
            s.submit("quick", i).result(10)
        release.set()
    waits = sorted((starts[i] - submitted[i]) * 1000 for i in range(n))
    return statistics.median(waits), waits[int(len(waits) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default=None, help="where the file journals go (a real disk)")
    parser.add_argument("--jobs", type=int, default=20_000)
    args = parser.parse_args()
    n = args.jobs
    base = args.dir or tempfile.mkdtemp(prefix="actorq-bench-")
    Path(base).mkdir(parents=True, exist_ok=True)
    tpe = threadpool(n)
    memory = single("memory", n)
    print(
        f"memory, submit() per job: {memory:,.0f}/s; ThreadPoolExecutor(4): {tpe:,.0f}/s;"
        f" ratio {memory / tpe:.2f}"
    )
    fsyncs = raw_fsync(base, 3000)
    one = single(f"{base}/single", 3000)
    print(
        f"file, submit() per job: {one:,.0f}/s; raw 200-byte write+fdatasync: {fsyncs:,.0f}/s;"
        f" ratio {one / fsyncs:.2f}"
    )
    many = producers(f"{base}/eight", 16_000)
    print(f"file, 8 producers: {many:,.0f}/s; ratio to one producer {many / one:.1f}")
    piped = pipeline(f"{base}/pipeline", n)
    print(f"file, pipeline(): {piped:,.0f}/s; ratio to one producer {piped / one:.1f}")
    p50, p99 = head_of_line()
    print(f"head of line, quick jobs beside a slow one: wait p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    main()
