"""actorq side by side with the job systems users would pick instead, in one run.

    python -m bench                 # everything, 3 runs per figure (about 15 minutes)
    python -m bench --quick         # small counts, 1 run (under 2 minutes)
    python -m bench --only actorq   # actorq alone (with --quick: the test suite's smoke run)

One dedicated redis-server on a free port serves every system. The peers
(RQ, Dramatiq, Celery, arq, taskiq, huey) each run from a virtual
environment of their own under ~/.cache/actorq-bench (see bench/peers);
actorq runs with each of its journals. Every job body is one Redis INCR.
Each figure is the median of the runs, with min and max. Results go to the
terminal (a table), to JSON and to a PNG chart (--out, default bench/results).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import core, queued
from bench.actorq_runs import JOURNALS, run_actorq
from bench.peers import DEFAULT_N, PEERS, WORKLOADS
from bench.peers.common import PeerResult
from bench.peers.redis_server import redis_server

QUICK_N = {"enqueue": 300, "drain": 300, "latency": 30, "retry": 200}
TINY_N = {"enqueue": 50, "drain": 50, "latency": 5, "retry": 20}
QUEUED_JOBS = {"full": 1_000_000, "quick": 20_000, "tiny": 2_000}
# Cells whose full count alone would outlast the 15-minute budget, measured on fewer
# jobs (the figures are rates or percentiles, so they stay comparable; the table
# marks them). RQ forks a process per job (~20 ms each here, so 54 jobs/s: 20,000
# jobs take 6 minutes); arq polls its queue every 0.5 s by default (a sequential job
# takes 500 ms: 500 of them take 4 minutes).
SLOW_CELLS = {
    ("rq", "drain"): 2_000,
    ("rq", "retry"): 400,
    ("arq", "drain"): 2_000,
    ("arq", "latency"): 40,
    ("arq", "retry"): 1_000,
}
HIGHER_IS_BETTER = {"enqueue": True, "drain": True, "latency": False, "retry": True}

Measure = Callable[[], dict[str, Any]]


def plan(args: argparse.Namespace, redis_url: str) -> list[tuple[str, str, Measure]]:
    """(system, workload, measure) for every cell of one run."""
    counts = TINY_N if args.tiny else QUICK_N if args.quick else DEFAULT_N
    cells: list[tuple[str, str, Measure]] = []
    for journal in JOURNALS:
        for workload in WORKLOADS:
            cells.append(
                (
                    f"actorq ({journal})",
                    workload,
                    _actorq(journal, workload, counts[workload], redis_url),
                )
            )
    for journal in JOURNALS:
        # The fast path for a stream of submissions: system.pipeline(), every job
        # durable when the clock stops, set against the peers' enqueue.
        cells.append(
            (
                f"actorq ({journal}) pipeline",
                "enqueue",
                _actorq(journal, "pipeline", counts["enqueue"], redis_url),
            )
        )
    if args.only != "actorq":
        from bench.peers.harness import run_peer

        for peer in args.peers:
            for workload in WORKLOADS:
                n = counts[workload]
                if counts is DEFAULT_N:
                    n = SLOW_CELLS.get((peer, workload), n)
                cells.append((peer, workload, _peer(run_peer, peer, workload, n, redis_url)))
    noop_n = counts["drain"]
    cells.append(
        ("ThreadPoolExecutor(4)", "no-op", lambda: {"value": _scaled(core.threadpool_noop, noop_n)})
    )
    cells.append(("actorq (memory)", "no-op", lambda: {"value": _actorq_noop(noop_n)}))
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    for journal in ("file", "redis"):
        cells.append(
            (f"actorq ({journal})", "queued", _queued(journal, QUEUED_JOBS[size], redis_url))
        )
    return cells


def _actorq(journal: str, workload: str, n: int, url: str) -> Measure:
    def measure() -> dict[str, Any]:
        result = run_actorq(journal, workload, n, url)
        return {"value": result.value, "unit": result.unit, **result.extra}

    return measure


def _peer(run: Callable[..., Any], peer: str, workload: str, n: int, url: str) -> Measure:
    def measure() -> dict[str, Any]:
        result = run(peer, workload, n, url)
        if isinstance(result, PeerResult):
            return {"value": result.value, "unit": result.unit, **result.extra}
        return {"value": None, "error": result["error"][-500:], "stage": result["stage"]}

    return measure


def _scaled(measure: Callable[[], float], n: int) -> float:
    core.N_NOOP = n
    return measure()


def _actorq_noop(n: int) -> float:
    core.N_NOOP = n
    return float(core.fresh("memory", core.batch_noop))  # type: ignore[arg-type]


def _queued(journal: str, jobs: int, url: str) -> Measure:
    def measure() -> dict[str, Any]:
        figures = queued.measure(journal, jobs, url)
        return {"value": figures["recovery_s"], "unit": "s", **figures}

    return measure


def summarize(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[(row["system"], row["workload"])].append(row)
    summary = {}
    for key, runs in grouped.items():
        values = [r["value"] for r in runs if r["value"] is not None]
        entry: dict[str, Any] = {
            "runs": len(runs),
            "failed": len(runs) - len(values),
            "n": runs[0].get("n"),
        }
        if values:
            entry.update(median=statistics.median(values), min=min(values), max=max(values))
            if key[1] == "latency":
                entry["p99_median"] = statistics.median(
                    r["p99_ms"] for r in runs if r["value"] is not None
                )
            startups = [r["startup_s"] for r in runs if r.get("startup_s") is not None]
            if startups:
                entry["startup_s"] = statistics.median(startups)
            if key[1] == "queued":
                entry["peak_rss_mib"] = max(
                    r["peak_rss_mib"] for r in runs if r["value"] is not None
                )
                entry["jobs"] = runs[0]["jobs"]
        else:
            entry["error"] = runs[-1].get("error", "no value")
        summary[key] = entry
    return summary


def best_peer(summary: dict[tuple[str, str], dict[str, Any]], workload: str) -> float | None:
    values = [
        e["median"]
        for (s, w), e in summary.items()
        if w == workload and s in PEERS and "median" in e
    ]
    if not values:
        return None
    return max(values) if HIGHER_IS_BETTER[workload] else min(values)


def print_table(summary: dict[tuple[str, str], dict[str, Any]], console: Console) -> None:
    for workload in WORKLOADS:
        best = best_peer(summary, workload)
        unit = "ms (p50; p99)" if workload == "latency" else "jobs/s"
        table = Table(title=f"{workload} ({unit})")
        for column in ("system", "median", "min", "max", "vs best peer", "start-up s"):
            table.add_column(column, justify="left" if column == "system" else "right")
        for (system, w), entry in sorted(summary.items()):
            if w != workload:
                continue
            if "median" not in entry:
                table.add_row(system, "failed", "", "", entry.get("error", "")[:60])
                continue
            digits = 2 if workload == "latency" else 0
            median = f"{entry['median']:,.{digits}f}"
            if workload == "latency":
                median += f"; {entry['p99_median']:.2f}"
            ratio = ""
            if best:
                factor = (
                    entry["median"] / best if HIGHER_IS_BETTER[workload] else best / entry["median"]
                )
                ratio = f"{factor:.2f}x"
            label = system
            if entry.get("n") == SLOW_CELLS.get((system, workload)):
                label = f"{system} (n={entry['n']:,})"
            startup = f"{entry['startup_s']:.2f}" if "startup_s" in entry else ""
            table.add_row(
                label,
                median,
                f"{entry['min']:,.{digits}f}",
                f"{entry['max']:,.{digits}f}",
                ratio,
                startup,
            )
        console.print(table)
    noop = {s: e for (s, w), e in summary.items() if w == "no-op" and "median" in e}
    if len(noop) == 2:
        ratio = noop["actorq (memory)"]["median"] / noop["ThreadPoolExecutor(4)"]["median"]
        console.print(
            f"no-op jobs: actorq (memory, one submit_many) / ThreadPoolExecutor(4) = {ratio:.2f}"
        )
    for (system, w), entry in sorted(summary.items()):
        if w == "queued" and "median" in entry:
            console.print(
                f"{system}: recovery with {entry.get('jobs', '?')} jobs queued "
                f"{entry['median']:.2f} s (min {entry['min']:.2f}, max {entry['max']:.2f}), "
                f"peak RSS {entry['peak_rss_mib']:.0f} MiB"
            )


def chart(summary: dict[tuple[str, str], dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, workload in zip(axes.flat, WORKLOADS, strict=True):
        entries = sorted(
            ((s, e) for (s, w), e in summary.items() if w == workload and "median" in e),
            key=lambda item: item[1]["median"],
            reverse=HIGHER_IS_BETTER[workload],
        )
        names = [s for s, _ in entries]
        medians = [e["median"] for _, e in entries]
        errors = [
            [m - e["min"] for m, (_, e) in zip(medians, entries, strict=True)],
            [e["max"] - m for m, (_, e) in zip(medians, entries, strict=True)],
        ]
        colors = ["tab:blue" if n.startswith("actorq") else "tab:gray" for n in names]
        ax.barh(names, medians, xerr=errors, color=colors)
        ax.invert_yaxis()
        ax.set_title(
            f"{workload} ({'p50 ms, lower is better' if workload == 'latency' else 'jobs/s'})"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def versions(peers: list[str]) -> dict[str, str]:
    found = {"actorq": version("actorq"), "python": platform.python_version()}
    if peers:
        import subprocess

        from bench.peers.venvs import ensure_venv, venv_python

        for peer in peers:
            venv = ensure_venv(peer)
            if isinstance(venv, Path):
                package = {"taskiq": "taskiq", "huey": "huey"}.get(peer, peer)
                out = subprocess.run(
                    [
                        str(venv_python(venv)),
                        "-c",
                        f"from importlib.metadata import version; print(version({package!r}))",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                found[peer] = out.stdout.strip() or "unknown"
            else:
                found[peer] = f"not installed: {venv.error[-200:]}"
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run")
    parser.add_argument(
        "--tiny", action="store_true", help=argparse.SUPPRESS
    )  # the test's smoke run
    parser.add_argument("--only", choices=("actorq",), help="measure actorq alone")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick or args.tiny else 3)
    peers = [] if args.only == "actorq" else args.peers
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if peers:
        console.print("preparing the peers' virtual environments ...")
    meta = {
        "versions": versions(peers),
        "machine": f"{platform.machine()}, {platform.system()}",
        "runs": runs,
    }
    rows: list[dict[str, Any]] = []
    with redis_server() as url:
        cells = plan(args, url)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("measuring", total=len(cells) * runs)
            for run in range(runs):
                for system, workload, measure in cells:
                    progress.update(bar, description=f"run {run + 1}/{runs}: {system} {workload}")
                    try:
                        figures = measure()
                    except Exception as exc:  # a broken cell is reported, not fatal
                        figures = {"value": None, "error": f"{type(exc).__name__}: {exc}"}
                    rows.append({"system": system, "workload": workload, "run": run, **figures})
                    progress.advance(bar)
                    if not console.is_terminal:  # a log for runs whose output goes to a file
                        print(
                            f"run {run + 1} {system} {workload}: {figures.get('value')}", flush=True
                        )
    summary = summarize(rows)
    print_table(summary, console)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    report = {
        "meta": meta,
        "summary": [{"system": s, "workload": w, **e} for (s, w), e in sorted(summary.items())],
        "rows": rows,
    }
    (args.out / "latest.json").write_text(json.dumps(report, indent=1, default=str))
    try:
        chart(summary, args.out / "latest.png")
    except ImportError:
        console.print("matplotlib is not installed: no chart (pip install -e '.[bench]')")
    console.print(f"total {meta['seconds']} s; results in {args.out}/latest.json and latest.png")
    return 0 if all("median" in e for e in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
