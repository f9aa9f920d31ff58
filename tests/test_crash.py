"""Crash recovery with real processes: SIGKILL at random moments, restart, check.

A child process (tests/crash_app.py) runs a workload on a durable journal;
the test kills it after a random number of acknowledged submissions (seeded),
restarts it on the same journal several times, then lets a last run finish
and compares the final state with everything that was acknowledged.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
JOBS = 120


def run_child(journal: str, ledger: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_app", journal, str(ledger), str(JOBS), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def read_acks(proc: subprocess.Popen[bytes], stop_after: int, timeout: float = 60) -> list[str]:
    """Read ACK lines until `stop_after` of them (or the child says it is idle)."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    while len(lines) < stop_after:
        if time.monotonic() > deadline:
            raise AssertionError(f"child gave {len(lines)} acks in {timeout}s: {proc.stderr}")
        if not selector.select(timeout=1):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"child exited early ({proc.wait()}): {stderr[-2000:]}")
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            line = raw.decode()
            if line.startswith("ACK "):
                lines.append(line)
            elif line == "IDLE":
                return lines
    return lines


def crash_cycles(journal: str, tmp: Path, kills: int, seed: int) -> None:
    """Kill and restart the workload `kills` times, then finish it and check everything."""
    rng = random.Random(seed)
    ledger = tmp / "ledger"
    ledger.mkdir()
    acked: dict[str, set[str]] = {}
    for _ in range(kills):
        proc = run_child(journal, ledger)
        try:
            for line in read_acks(proc, stop_after=rng.randint(1, JOBS)):
                _, key, job_id = line.split()
                acked.setdefault(key, set()).add(job_id)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    report_path = tmp / "report.json"
    final = run_child(journal, ledger, "--finish", str(report_path))
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr.decode()[-3000:]
    check(json.loads(report_path.read_text()), acked, ledger)


def check(report: dict[str, Any], acked: dict[str, set[str]], ledger: Path) -> None:
    runs: Counter[str] = Counter()
    for log in ledger.glob("*.log"):
        for line in log.read_text().splitlines():
            kind, key, _attempt = line.split()
            runs[key] += 1
    jobs = report["jobs"]
    assert acked, "the kills came before any acknowledgement; the test proved nothing"
    for key, ids in acked.items():
        assert len(ids) == 1, f"{key} was acknowledged as different jobs: {ids}"
        job = jobs[key]
        assert job["id"] in ids, f"{key}: the idempotency key did not survive recovery"
    for key, job in jobs.items():
        kind, n = key.split("-")[0], int(key.split("-")[1])
        assert job["terminal"], f"{key} never finished: {job}"
        if kind == "alo":
            assert job["status"] == "succeeded" and job["result"] == n * 2, job
            assert runs[key] >= 1
        elif kind == "flaky":
            assert job["status"] == "succeeded" and job["result"] == n, job
            # Attempt 1 fails, so success needs attempt 2; a crash may have used up attempt 1.
            assert runs[key] >= 1 and job["attempts"] >= 2
        elif kind == "doomed":
            assert job["status"] == "dead", job
            assert runs[key] >= 2
        else:  # at most once: never run twice; a job lost in a crash is dead-lettered
            assert runs[key] <= 1, f"{key} ran {runs[key]} times"
            if job["status"] == "succeeded":
                assert job["result"] == n + 1
            else:
                assert job["status"] == "dead" and job["error"] == "lost in crash", job
    dead = [k for k, j in jobs.items() if j["status"] == "dead"]
    assert sorted(report["dead"]) == sorted(dead), "dead letters lost or duplicated"


def test_file_journal_survives_sigkill(tmp_path: Path) -> None:
    """12 kills of a process on the file journal lose nothing acknowledged."""
    crash_cycles(str(tmp_path / "journal"), tmp_path, kills=12, seed=20261123)


def test_redis_journal_survives_sigkill(tmp_path: Path, redis_url: str) -> None:
    """10 kills of a process on the Redis journal lose nothing acknowledged."""
    # A killed owner's lease must lapse before the next process may take over.
    crash_cycles(f"{redis_url}&lease=1&claim_wait=5", tmp_path, kills=10, seed=1123)
