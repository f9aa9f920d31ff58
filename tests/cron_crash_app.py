"""Hourly schedules in a child process that the cron crash tests kill with SIGKILL.

    python -m tests.cron_crash_app JOURNAL LEDGER_DIR START UNTIL [--kill before|after N]
                                   [--report REPORT.json]

Time is a VirtualClock starting at START, driven by this process from one
fire to the next up to UNTIL, so hours pass in milliseconds; it prints
`NOW t` after each fire is decided. Two schedules fire every hour: "alo"
(at-least-once) and "amo" (at-most-once); handlers append a line to a
ledger file, so the parent counts how often each fire's job really ran.

`--kill before N` sends SIGKILL to this process when the N-th journal batch
that holds a fire is about to be written (the fire was decided, its job
submitted in memory, nothing durable); `--kill after N` right after that
batch is written, before anything else happens. With --report it waits
for every job to end and writes the final schedules and jobs as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actorq import ActorSystem, VirtualClock, current_job
from actorq.core.events import ScheduleFired
from actorq.persistence.file import FileJournal
from tests.helpers import wait_until

YEAR = 366 * 86400.0


class KillingJournal(FileJournal):
    """A file journal that kills its own process around the N-th batch holding a fire."""

    def __init__(self, directory: str, when: str | None, nth: int) -> None:
        super().__init__(directory)
        self.when = when
        self.nth = nth
        self.fires = 0

    def append(self, persistence_id: str, events: Sequence[Any], *, after_seq: int) -> None:
        fire = any(isinstance(e, ScheduleFired) for e in events)
        if fire:
            self.fires += 1
        if fire and self.fires == self.nth and self.when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        super().append(persistence_id, events, after_seq=after_seq)
        if fire and self.fires == self.nth and self.when == "after":
            os.kill(os.getpid(), signal.SIGKILL)


def build(journal: KillingJournal, ledger: Path, start: float) -> tuple[ActorSystem, VirtualClock]:
    clock = VirtualClock(start=start)
    system = ActorSystem(workers=3, journal=journal, clock=clock, retention=YEAR)

    def record(kind: str) -> None:
        line = f"{kind} {current_job().id}\n".encode()
        fd = os.open(ledger / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    @system.cron("0 * * * *", catch_up="all", window=YEAR, overlap="allow")
    @system.task("alo")
    def alo() -> None:
        record("alo")

    @system.cron("0 * * * *", catch_up="all", window=YEAR, overlap="allow")
    @system.task("amo", delivery="at_most_once")
    def amo() -> None:
        record("amo")

    return system, clock


def drive(system: ActorSystem, clock: VirtualClock, until: float) -> None:
    """Advance from fire to fire, each once the previous fire's jobs have ended."""
    assert system.join(timeout=60), "caught-up jobs did not finish"
    while True:
        infos = system.schedules()
        target = min(i.next_fires[0].timestamp() for i in infos)
        if target > until:
            return

        def armed(target: float = target) -> bool:
            deadline = clock.next_deadline()
            return deadline is not None and deadline <= target

        wait_until(armed, timeout=60, interval=0.0005)
        clock.advance(target - clock.now())
        wait_until(
            lambda target=target: all(i.high_water_mark >= target for i in system.schedules()),  # type: ignore[misc]
            timeout=60,
            interval=0.0005,
        )
        # The jobs end before time moves on, so a kill finds running only the jobs of
        # the fire it interrupts.
        assert system.join(timeout=60), "jobs did not finish"
        print(f"NOW {target}", flush=True)


def report(system: ActorSystem) -> dict[str, Any]:
    def cron_jobs(core: Any) -> dict[str, Any]:
        return {
            job_id: {"status": job.status.value, "error": job.error}
            for job_id, job in core.state.jobs.items()
            if job_id.startswith("cron:")
        }

    return {
        "jobs": system._read(cron_jobs),
        "schedules": {
            i.name: {"fired": i.fired, "missed": i.missed, "skipped": i.skipped}
            for i in system.schedules()
        },
    }


def main(argv: list[str]) -> int:
    journal_dir, ledger, start, until = argv[0], Path(argv[1]), float(argv[2]), float(argv[3])
    options = dict(zip(argv[4::2], argv[5::2], strict=True))
    kill = options.get("--kill", "none 0").split()
    journal = KillingJournal(journal_dir, kill[0], int(kill[1]))
    system, clock = build(journal, ledger, start)
    with system:
        print("STARTED", flush=True)
        drive(system, clock, until)
        if "--report" in options:
            assert system.join(timeout=60), "jobs did not finish"
            Path(options["--report"]).write_text(json.dumps(report(system)))
        print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
