"""Every example runs to completion, so none of them rots."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

ROOT = Path(__file__).parent.parent / "examples"
EXAMPLES = sorted(ROOT.glob("*.py")) + sorted((ROOT / "sim").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_runs(path: Path) -> None:
    """The example exits 0 and prints something."""
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_actorq_demo_runs_the_embedded_workload() -> None:
    """`actorq demo` runs jobs of every kind on a file journal and prints the summary."""
    from actorq.demo import run_demo

    summary = run_demo(jobs=60, console=Console(file=io.StringIO()))
    assert summary.submitted == summary.succeeded + summary.dead
    assert summary.retried > 0
    assert summary.dead > 0
    done = subprocess.run(
        [sys.executable, "-m", "actorq.service.cli", "demo", "--jobs", "40"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "summary" in done.stdout
    assert "journal /" in done.stdout  # the file journal in a temporary directory
