"""Cron fires exactly once across SIGKILL of a real process on the file journal.

The child (tests/cron_crash_app.py) runs two hourly schedules on a virtual
clock and is killed: by itself, right before and right after the journal
write of a batch holding a fire, and by this test at a random moment. Each
restart begins hours later, so several fire instants pass while it is down
(catch_up="all"). At the end every hourly instant must have exactly one
job per schedule, and the at-most-once schedule's jobs ran at most once.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
HOUR = 3600.0
T0 = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


def start_child(journal: Path, ledger: Path, start: float, until: float, *extra: str) -> Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.cron_crash_app", str(journal), str(ledger)),
            *(repr(start), repr(until), *extra),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


Popen = subprocess.Popen[bytes]


def read_lines(proc: Popen, stop_after_now: int | None = None, timeout: float = 120) -> list[str]:
    """Lines the child printed until it exits (or until `stop_after_now` NOW lines)."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise AssertionError(f"the child did not finish in {timeout}s: {lines[-3:]}")
        if not selector.select(timeout=1):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            proc.wait()
            return lines
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        lines.extend(raw.decode() for raw in complete)
        seen = sum(x.startswith("NOW ") for x in lines)
        if stop_after_now is not None and seen >= stop_after_now:
            return lines


def last_now(lines: list[str], default: float) -> float:
    times = [float(x.split()[1]) for x in lines if x.startswith("NOW ")]
    return times[-1] if times else default


@pytest.mark.parametrize("seed", [20261125, 7, 1123])
def test_cron_fires_exactly_once_across_sigkills(tmp_path: Path, seed: int) -> None:
    """Killed before and after a fire's write and at random: one job per hourly instant."""
    rng = random.Random(seed)
    journal, ledger = tmp_path / "journal", tmp_path / "ledger"
    ledger.mkdir()
    now = T0
    far = T0 + 1000 * HOUR
    for kill in ("before 3", "after 2", "before 1", None, "after 1"):
        proc = start_child(journal, ledger, now, far, *(["--kill", kill] if kill else []))
        if kill is None:
            lines = read_lines(proc, stop_after_now=rng.randint(2, 6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert "STARTED" in lines
        else:
            # A kill may come during recovery's catch-up, before the child says STARTED.
            lines = read_lines(proc)
            stderr = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, stderr)
        # Down for a few hours: several fire instants pass before the next start.
        now = last_now(lines, now) + rng.choice([2.5, 3.2, 4.7]) * HOUR
    report_path = tmp_path / "report.json"
    until = now + 3 * HOUR
    final = start_child(journal, ledger, now, until, "--report", str(report_path))
    _, final_err = final.communicate(timeout=180)
    assert final.returncode == 0, final_err.decode()[-3000:]
    report = json.loads(report_path.read_text())

    expected = [T0 + h * HOUR for h in range(1, int((until - T0) // HOUR) + 1)]
    assert len(expected) > 20
    runs: Counter[str] = Counter()
    for log in ledger.glob("*.log"):
        for line in log.read_text().splitlines():
            _kind, job_id = line.split()
            runs[job_id] += 1
    jobs = report["jobs"]
    for name in ("alo", "amo"):
        ids = {f"cron:{name}:{round(t)}" for t in expected}
        mine = {j for j in jobs if j.startswith(f"cron:{name}:")}
        assert mine == ids, (name, sorted(ids - mine)[:3], sorted(mine - ids)[:3])
        assert report["schedules"][name] == {"fired": len(expected), "missed": 0, "skipped": 0}
    for job_id, job in jobs.items():
        if job_id.startswith("cron:alo:"):
            assert job["status"] == "succeeded" and runs[job_id] >= 1, (job_id, job)
        else:  # at most once: never twice; one lost in a crash is dead, not re-run
            assert runs[job_id] <= 1, f"{job_id} ran {runs[job_id]} times"
            if job["status"] == "succeeded":
                assert runs[job_id] == 1
            else:
                assert job == {"status": "dead", "error": "lost in crash"}, (job_id, job)
