"""What the PrometheusObserver costs on the hot path: no-op jobs/s with and without it.

The observer runs on the Dispatcher's thread once per group commit, so its
cost shows up directly as lost throughput on jobs that do nothing. Run:

    /work/venv/bin/python bench/metrics_overhead.py [--jobs 20000] [--runs 3]

Each run builds a fresh in-memory system, submits all jobs in one
`submit_many` batch, and times submission plus `join()`. Runs with and
without metrics alternate, so drift in a shared machine hits both alike.
Wall-clock throughput on a busy machine varies by 10-20% from run to run,
more than the observer costs; so the runs with metrics also time the hook
itself, which is the direct measure of what it adds to the Dispatcher.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from actorq import ActorSystem
from actorq.core.state import DispatcherState
from actorq.service.metrics import PrometheusObserver


class TimedObserver(PrometheusObserver):
    """The real observer, plus the time spent in its per-commit hook."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_seconds = 0.0

    def committed(self, events: list[Any], state: DispatcherState) -> None:
        started = time.perf_counter()
        super().committed(events, state)
        self.hook_seconds += time.perf_counter() - started


def noop() -> None:
    """The job: nothing, so that what is measured is the system's own overhead."""


def run_once(jobs: int, workers: int, metrics: bool) -> tuple[float, float]:
    """Jobs per second, and the share of the run spent in the metrics hook."""
    observer = TimedObserver() if metrics else None
    system = ActorSystem(workers=workers, journal="memory", observer=observer)
    system.task("noop")(noop)
    system.start()
    try:
        started = time.perf_counter()
        system.submit_many("noop", ([] for _ in range(jobs)))
        if not system.join(timeout=300):
            raise RuntimeError("jobs did not finish within 300 s")
        elapsed = time.perf_counter() - started
    finally:
        system.stop(timeout=10)
    if observer is None:
        return jobs / elapsed, 0.0
    if observer.duration.count("noop") != jobs:
        raise RuntimeError(f"observer counted {observer.duration.count('noop')} of {jobs} jobs")
    return jobs / elapsed, observer.hook_seconds / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    run_once(1_000, args.workers, metrics=True)  # warm-up: imports, first thread start-up
    without: list[float] = []
    with_metrics: list[float] = []
    shares: list[float] = []
    for _ in range(args.runs):
        without.append(run_once(args.jobs, args.workers, metrics=False)[0])
        rate, share = run_once(args.jobs, args.workers, metrics=True)
        with_metrics.append(rate)
        shares.append(share)
    print(f"{args.jobs:,} no-op jobs, {args.workers} workers, {args.runs} runs each")
    for label, rates in (("without metrics", without), ("with metrics", with_metrics)):
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{label:>16}: median {statistics.median(rates):,.0f} jobs/s  (runs: {runs})")
    base, measured = statistics.median(without), statistics.median(with_metrics)
    print(f"{'difference':>16}: {100 * (base - measured) / base:+.1f}% (medians, wall clock)")
    per_job = statistics.median(shares) / statistics.median(with_metrics) * 1e6
    print(
        f"{'hook time':>16}: {100 * statistics.median(shares):.1f}% of the run,"
        f" {per_job:.2f} us per job (on the Dispatcher's thread)"
    )


if __name__ == "__main__":
    main()
