"""CPU-bound jobs on the process pool against one process and against threads.

    python -m bench.cpu_pool [--jobs 400] [--runs 3] [--ms 5]

Each job is pure Python (a loop of integer arithmetic) sized to take about
`--ms` milliseconds in this process. For each configuration the system is
started and warmed up (its children have imported this module), then
`--jobs` jobs are submitted in one batch and waited for; the figure is jobs
per second, the median of `--runs` (and the best run: on a machine shared
with other work, the run that had the cores to itself). Ratios are to the same node with one
worker process, measured in the same run:

- processes x 2 / processes x 1: what a second core buys (target >= 1.8);
- threads x 2 / processes x 1: the GIL, for comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from actorq import ActorSystem


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(ms: float) -> int:
    """The `n` for which burn(n) takes about `ms` milliseconds here."""
    n = 10_000
    while True:
        started = time.perf_counter()
        burn(n)
        took = time.perf_counter() - started
        if took > 0.05:
            return max(1, int(n * ms / 1000 / took))
        n *= 2


def rate(pool: str, workers: int, n: int, jobs: int) -> float:
    system = ActorSystem(workers=workers, journal="memory", pool=pool)  # type: ignore[arg-type]
    system.task("burn")(burn)
    with system:
        for handle in system.submit_many("burn", [[n]] * workers * 2):
            handle.result(timeout=60)  # children started, module imported
        started = time.perf_counter()
        handles = system.submit_many("burn", [[n]] * jobs)
        for handle in handles:
            handle.result(timeout=600)
        return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ms", type=float, default=5.0)
    args = parser.parse_args()
    n = calibrate(args.ms)
    configs = [("processes", 1), ("processes", 2), ("threads", 2)]
    rates: dict[tuple[str, int], float] = {}
    best: dict[tuple[str, int], float] = {}
    for pool, workers in configs:
        runs = [rate(pool, workers, n, args.jobs) for _ in range(args.runs)]
        rates[(pool, workers)] = statistics.median(runs)
        best[(pool, workers)] = max(runs)
        print(
            f"{pool} x {workers}: {rates[(pool, workers)]:,.0f} jobs/s  (runs: "
            + ", ".join(f"{r:,.0f}" for r in runs)
            + ")"
        )
    base = rates[("processes", 1)]
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}")
    print(f"job: burn({n}), ~{args.ms:g} ms; {args.jobs} jobs per run, median of {args.runs}")
    top = best[("processes", 1)]
    for pool, workers in configs[1:]:
        print(
            f"{pool} x {workers} / processes x 1: median {rates[(pool, workers)] / base:.2f},"
            f" best {best[(pool, workers)] / top:.2f}"
        )


if __name__ == "__main__":
    main()
