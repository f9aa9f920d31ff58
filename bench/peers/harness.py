"""Parent-side entry point: make sure a peer's venv exists, run one workload there, parse it.

`run_peer` never raises for a peer's own trouble: a peer that cannot be installed or whose
run fails comes back as a failure dict with `value` None and the error, so a report can
show it instead of silently leaving it out.

    python -m bench.peers.harness --quick          # every peer x workload, small counts
    python -m bench.peers.harness --reps 3         # the full counts, three times
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any, TypedDict

from bench.peers import DEFAULT_N, PACKAGE_DIR, PEERS, REPO_ROOT, WORKLOADS
from bench.peers.common import UNITS, PeerResult
from bench.peers.redis_server import redis_server
from bench.peers.venvs import InstallFailure, ensure_venv, venv_python

__all__ = ["PEERS", "PeerFailure", "run_peer"]

RUN_TIMEOUT_S = 1800
QUICK_N = {"enqueue": 300, "drain": 300, "latency": 50, "retry": 300}


class PeerFailure(TypedDict):
    system: str
    workload: str
    value: None
    unit: str
    stage: str  # "install" or "run"
    error: str


def _failure(peer: str, workload: str, stage: str, error: str) -> PeerFailure:
    return PeerFailure(
        system=peer,
        workload=workload,
        value=None,
        unit=UNITS.get(workload, ""),
        stage=stage,
        error=error,
    )


def run_peer(peer: str, workload: str, n: int, redis_url: str) -> PeerResult | PeerFailure:
    venv_dir = ensure_venv(peer)
    if isinstance(venv_dir, InstallFailure):
        return _failure(peer, workload, "install", venv_dir.error)
    cmd = [
        str(venv_python(venv_dir)),
        str(PACKAGE_DIR / "runner.py"),
        *("--peer", peer, "--workload", workload, "--n", str(n), "--redis-url", redis_url),
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return _failure(peer, workload, "run", f"runner timed out after {RUN_TIMEOUT_S}s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = proc.stderr[-3000:]
        return _failure(
            peer, workload, "run", f"runner exited {proc.returncode}, no result: {tail}"
        )
    result = PeerResult.from_dict(json.loads(lines[-1]))
    if result.value is None:
        error = str(result.extra.get("error", "no value"))
        detail = result.extra.get("detail")
        return _failure(peer, workload, "run", f"{error}\n{detail}" if detail else error)
    return result


def _cell(result: PeerResult | PeerFailure) -> str:
    if isinstance(result, PeerResult) and result.value is not None:
        if result.workload == "latency":
            return f"{result.value:.2f}/{result.extra['p99_ms']:.2f}"
        return f"{result.value:,.0f}"
    return "FAILED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the peer benchmarks on a private redis-server."
    )
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--quick", action="store_true", help=f"small counts: {QUICK_N}")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--json", help="also write every result to this JSON file")
    args = parser.parse_args(argv)
    counts = QUICK_N if args.quick else DEFAULT_N

    for peer in args.peers:  # install first, so install time stays out of the suite time
        print(f"venv {peer}: {ensure_venv(peer)}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    with redis_server() as url:
        for rep in range(args.reps):
            for peer in args.peers:
                cells = []
                for workload in args.workloads:
                    t0 = time.perf_counter()
                    result = run_peer(peer, workload, counts[workload], url)
                    row = result.to_dict() if isinstance(result, PeerResult) else dict(result)
                    rows.append({**row, "rep": rep, "wall_s": round(time.perf_counter() - t0, 2)})
                    cells.append(f"{workload}={_cell(result)} ({rows[-1]['wall_s']}s)")
                    if not isinstance(result, PeerResult):
                        print(
                            f"  {peer}/{workload} FAILED: {result['error'][:2000]}", file=sys.stderr
                        )
                print(f"rep {rep} {peer:9s} " + "  ".join(cells), flush=True)
    total = time.perf_counter() - started
    print(f"total wall time {total:.1f}s (latency cells: p50/p99 ms)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"total_wall_s": total, "results": rows}, handle, indent=1)
    return 0 if all(r["value"] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
