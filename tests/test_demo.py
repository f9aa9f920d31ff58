"""`actorq demo` runs the number of jobs it announces."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from actorq.demo import run_demo


@pytest.mark.parametrize("jobs", [10, 57])
def test_the_demo_runs_as_many_jobs_as_it_says(jobs: int) -> None:
    """The header's count, the jobs submitted and the summary's count are one number."""
    output = io.StringIO()
    summary = run_demo(jobs=jobs, journal="memory", console=Console(file=output, width=200))
    assert f"{jobs} jobs" in output.getvalue()
    assert summary.submitted == jobs
    assert summary.succeeded + summary.dead + summary.cancelled == jobs
