"""A workload the crash tests run in a child process and kill with SIGKILL.

    python -m tests.crash_app JOURNAL LEDGER_DIR JOBS [--finish REPORT.json]

It submits JOBS jobs of four kinds, each with an idempotency key, so a
restarted run resubmits the same keys and gets the same jobs back. After
each acknowledged submission it prints `ACK key job_id` (flushed): the
parent knows exactly what was acknowledged before the kill. Handlers append
a line to a ledger file before they return, so the parent can count how
often each job really ran. With --finish it waits for every job to end and
writes a report of the final state.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from actorq import ActorSystem, JobStatus, RestartPolicy, current_job


def build(journal: str, ledger: Path) -> ActorSystem:
    system = ActorSystem(workers=3, journal=journal, prefetch=4)

    def record(kind: str, key: str) -> None:
        time.sleep(0.003)  # simulated work, so that kills find jobs in flight
        line = f"{kind} {key} {current_job().attempt}\n".encode()
        fd = os.open(ledger / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    @system.task("alo")
    def alo(key: str, n: int) -> int:
        record("alo", key)
        return n * 2

    @system.task("amo", delivery="at_most_once", policy=RestartPolicy(max_restarts=0))
    def amo(key: str, n: int) -> int:
        record("amo", key)
        return n + 1

    @system.task("flaky", policy=RestartPolicy(max_restarts=2))
    def flaky(key: str, n: int) -> int:
        record("flaky", key)
        if current_job().attempt == 1:
            raise RuntimeError("first attempt fails")
        return n

    @system.task("doomed", policy=RestartPolicy(max_restarts=1))
    def doomed(key: str, n: int) -> None:
        record("doomed", key)
        raise ValueError(f"doomed {n}")

    return system


KINDS = ("alo", "amo", "flaky", "doomed")


def main(argv: list[str]) -> int:
    journal, ledger, jobs = argv[0], Path(argv[1]), int(argv[2])
    report = argv[4] if len(argv) > 4 and argv[3] == "--finish" else None
    system = build(journal, ledger)
    with system:
        for i in range(jobs):
            kind = KINDS[i % len(KINDS)]
            key = f"{kind}-{i}"
            handle = system.submit(kind, key, i, idempotency_key=key)
            print(f"ACK {key} {handle.id}", flush=True)
        if report is None:
            print("SUBMITTED", flush=True)
            system.join()
            print("IDLE", flush=True)
            return 0
        assert system.join(timeout=60), "jobs did not finish"
        final: dict[str, Any] = {"jobs": {}, "dead": []}
        for i in range(jobs):
            key = f"{KINDS[i % len(KINDS)]}-{i}"
            handle = system.submit(KINDS[i % len(KINDS)], key, i, idempotency_key=key)
            info = system.job(handle.id)
            final["jobs"][key] = {
                "id": info.id,
                "status": info.status.value,
                "attempts": info.attempts,
                "result": info.result,
                "error": info.error,
                "terminal": info.status in (JobStatus.SUCCEEDED, JobStatus.DEAD),
            }
        final["dead"] = [d.idempotency_key for d in system.dead_letters()]
        Path(report).write_text(json.dumps(final))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
