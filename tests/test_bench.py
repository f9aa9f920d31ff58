"""The benchmark harness runs end to end on actorq alone, so it cannot rot.

It asserts that every figure comes out, never its size: speed is measured
by hand (docs/benchmarks.md), not in the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_quick_run_on_actorq_alone_gives_every_figure(tmp_path: Path) -> None:
    """`python -m bench --only actorq` with tiny counts writes JSON and a chart."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--only", "actorq", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "latest.json").read_text())
    cells = {(e["system"], e["workload"]): e for e in report["summary"]}
    for journal in ("memory", "file", "redis"):
        for workload in ("enqueue", "drain", "latency", "retry"):
            entry = cells[(f"actorq ({journal})", workload)]
            assert entry["median"] > 0, entry
    assert cells[("ThreadPoolExecutor(4)", "no-op")]["median"] > 0
    assert cells[("actorq (file)", "queued")]["peak_rss_mib"] > 0
    assert (tmp_path / "latest.png").stat().st_size > 0
