"""The core benchmark: the embedded system against ThreadPoolExecutor, in one run.

    python -m bench.core [--journal memory|DIR|redis://...] [--runs 3]

Workloads: 20,000 no-op jobs end to end (submitted as one batch, and one
submit() call per job, and from 8 threads at once), 500 sequential jobs submit->done (p50, p99), and
2,000 jobs that fail once and succeed on the retry (no backoff). The
reference is concurrent.futures.ThreadPoolExecutor running the same 20,000
no-op calls. Each figure is the median of `--runs` runs, min and max shown.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from actorq import ActorSystem, RestartPolicy, current_job

N_NOOP = 20_000
N_LATENCY = 500
N_RETRY = 2_000


def noop() -> None:
    return None


def make_system(journal: str) -> ActorSystem:
    system = ActorSystem(workers=4, journal=journal, policy=RestartPolicy(max_restarts=3))
    system.task("noop")(noop)

    @system.task("fail_once")
    def fail_once() -> None:
        if current_job().attempt == 1:
            raise RuntimeError("first attempt fails")

    return system


def threadpool_noop() -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(noop) for _ in range(N_NOOP)]
        for future in futures:
            future.result()
    return N_NOOP / (time.perf_counter() - started)


def batch_noop(system: ActorSystem) -> float:
    started = time.perf_counter()
    system.submit_many("noop", [()] * N_NOOP)
    assert system.join(120)
    return N_NOOP / (time.perf_counter() - started)


def single_noop(system: ActorSystem) -> float:
    started = time.perf_counter()
    for _ in range(N_NOOP):
        system.submit("noop")
    assert system.join(120)
    return N_NOOP / (time.perf_counter() - started)


def threaded_noop(system: ActorSystem, producers: int = 8, n: int | None = None) -> float:
    """Concurrent submitters: their submissions share group commits."""
    share = (N_NOOP if n is None else n) // producers

    def produce() -> None:
        for _ in range(share):
            system.submit("noop")

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert system.join(120)
    return share * producers / (time.perf_counter() - started)


def latency(system: ActorSystem) -> tuple[float, float]:
    samples = []
    for _ in range(N_LATENCY):
        started = time.perf_counter()
        system.submit("noop").result(timeout=10)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def retry_once(system: ActorSystem) -> float:
    started = time.perf_counter()
    system.submit_many("fail_once", [()] * N_RETRY)
    assert system.join(120)
    return N_RETRY / (time.perf_counter() - started)


def fresh(journal_spec: str, measure: Callable[[ActorSystem], object]) -> object:
    """Each measurement on a fresh system and journal, as a user's process would start."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = tmp if journal_spec == "file" else journal_spec
        if spec.startswith("redis"):  # a namespace of its own, so nothing is recovered
            spec += f"{'&' if '?' in spec else '?'}namespace=bench-{uuid.uuid4().hex[:8]}"
        system = make_system(spec)
        with system:
            return measure(system)


def summarize(name: str, values: list[float], unit: str, digits: int = 0) -> str:
    low, mid, high = (
        f"{v:,.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )
    return f"| {name} | {mid} | {low} | {high} | {unit} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--journal", default="memory", help='"memory", "file" (a temp dir) or a URL'
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {
        k: [] for k in ("tpe", "batch", "single", "threads", "p50", "p99", "retry")
    }
    for _ in range(args.runs):
        rows["tpe"].append(threadpool_noop())
        rows["batch"].append(fresh(args.journal, batch_noop))  # type: ignore[arg-type]
        rows["single"].append(fresh(args.journal, single_noop))  # type: ignore[arg-type]
        rows["threads"].append(fresh(args.journal, threaded_noop))  # type: ignore[arg-type]
        p50, p99 = fresh(args.journal, latency)  # type: ignore[misc]
        rows["p50"].append(p50)
        rows["p99"].append(p99)
        rows["retry"].append(fresh(args.journal, retry_once))  # type: ignore[arg-type]
    threads = threading.active_count()
    print(f"journal: {args.journal}; {args.runs} runs; threads alive at the end: {threads}")
    print("| workload | median | min | max | unit |")
    print("|---|---:|---:|---:|---|")
    print(summarize("ThreadPoolExecutor(4), 20,000 no-op calls", rows["tpe"], "calls/s"))
    print(summarize("actorq, 20,000 no-op jobs, one submit_many", rows["batch"], "jobs/s"))
    print(summarize("actorq, 20,000 no-op jobs, one submit() each", rows["single"], "jobs/s"))
    threaded = rows["threads"]
    print(summarize("actorq, 20,000 no-op jobs, submit() from 8 threads", threaded, "jobs/s"))
    print(summarize("actorq, 500 sequential jobs, p50 submit->done", rows["p50"], "ms", 3))
    print(summarize("actorq, 500 sequential jobs, p99 submit->done", rows["p99"], "ms", 3))
    print(summarize("actorq, 2,000 jobs failing once then succeeding", rows["retry"], "jobs/s"))
    ratio = statistics.median(rows["batch"]) / statistics.median(rows["tpe"])
    print(f"\nbatch no-op throughput / ThreadPoolExecutor = {ratio:.2f}")


if __name__ == "__main__":
    main()
