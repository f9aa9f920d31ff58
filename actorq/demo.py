"""`actorq demo`: an embedded workload that shows the system at work.

A few hundred jobs of several kinds run on a supervised worker pool, with
the journal in files (a fresh temporary directory unless one is given):
quick jobs, flaky ones that fail at random and are retried with jittered
backoff, doomed ones that end in the dead letters, delayed ones, and one
that overruns its timeout and gets its worker replaced.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from actorq import ActorSystem, Backoff, JobHandle, JobStatus, RestartPolicy, current_job


@dataclass
class DemoSummary:
    submitted: int
    succeeded: int
    retried: int
    dead: int
    cancelled: int
    seconds: float

    @property
    def throughput(self) -> float:
        return self.submitted / self.seconds if self.seconds else 0.0


def build_system(journal: str, workers: int = 4, seed: int = 7) -> ActorSystem:
    system = ActorSystem(workers=workers, journal=journal, queues=("interactive", "default"))
    rng = random.Random(seed)
    lock = threading.Lock()

    def chance(p: float) -> bool:
        with lock:
            return rng.random() < p

    @system.task("thumbnail", queue="interactive", priority=5)
    def thumbnail(width: int, height: int) -> list[int]:
        return [width // 4, height // 4]

    @system.task(
        "fetch",
        policy=RestartPolicy(
            max_restarts=4, backoff=Backoff.exponential(0.01, cap=0.2, jitter="full")
        ),
    )
    def fetch(url: str) -> int:
        if chance(0.4):
            raise ConnectionError(f"{url} did not answer")
        return len(url)

    @system.task("charge", policy=RestartPolicy(max_restarts=2, give_up_on=(PermissionError,)))
    def charge(account: int, cents: int) -> str:
        if account % 10 == 0:
            raise PermissionError(f"account {account} is frozen")
        if account % 10 == 1:
            raise ValueError(f"account {account}: card declined")
        return f"charged {cents} to {account}"

    @system.task("report")
    def report(day: int) -> str:
        return f"report for day {day}"

    @system.task("crunch", timeout=0.5, policy=RestartPolicy(max_restarts=1))
    def crunch(n: int) -> int:
        job = current_job()
        if job.attempt == 1 and n == 0:
            # A handler that overruns: it notices the cancellation and gives up.
            while not job.cancelled:
                time.sleep(0.01)
            return -1
        return sum(range(n))

    return system


def run_demo(
    jobs: int = 300, journal: str | None = None, console: Console | None = None
) -> DemoSummary:
    console = console or Console()
    with ExitStack() as stack:
        if journal is None:
            journal = stack.enter_context(tempfile.TemporaryDirectory(prefix="actorq-demo-"))
        system = build_system(journal)
        console.print(f"[bold]actorq demo[/]: {jobs} jobs, 4 workers, journal [cyan]{journal}[/]")
        started = time.perf_counter()
        with system:
            handles = _submit_workload(system, jobs)
            _show_progress(system, len(handles), console)
            seconds = time.perf_counter() - started
            infos = [system.job(h.id) for h in handles]
            dead = system.dead_letters()
        summary = DemoSummary(
            submitted=len(infos),
            succeeded=sum(i.status is JobStatus.SUCCEEDED for i in infos),
            retried=sum(i.attempts > 1 for i in infos),
            dead=sum(i.status is JobStatus.DEAD for i in infos),
            cancelled=sum(i.status is JobStatus.CANCELLED for i in infos),
            seconds=seconds,
        )
        _print_summary(summary, [f"{d.task}{d.args}: {d.error}" for d in dead[:5]], console)
        return summary


def _submit_workload(system: ActorSystem, jobs: int) -> list[JobHandle]:
    """Submit exactly `jobs` jobs: every 25th regular job is followed by a delayed report,
    and two crunch jobs (one overruns its timeout) close the batch."""
    handles: list[JobHandle] = []
    kinds = ["thumbnail"] * 5 + ["fetch"] * 3 + ["charge"] * 2
    regular = jobs - 2
    i = 0
    while len(handles) < regular:
        kind = kinds[i % len(kinds)]
        if kind == "thumbnail":
            handles.append(system.submit("thumbnail", 640 + i, 480))
        elif kind == "fetch":
            handles.append(system.submit("fetch", f"https://example.test/{i}"))
        else:
            handles.append(system.submit("charge", i // 10, 100 + i))
        if i % 25 == 0 and len(handles) < regular:
            handles.append(system.submit("report", i, delay=0.2 + (i % 100) / 100))
        i += 1
    handles.append(system.submit("crunch", 0))
    handles.append(system.submit("crunch", 10_000))
    return handles


def _show_progress(system: ActorSystem, total: int, console: Console) -> None:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("running", total=total)
        while True:
            done = total - system.stats()["active"]
            progress.update(bar, completed=done)
            if done >= total or system.join(timeout=0.1):
                progress.update(bar, completed=total)
                return


def _print_summary(summary: DemoSummary, dead: list[str], console: Console) -> None:
    table = Table(title="summary")
    table.add_column("submitted", justify="right")
    table.add_column("succeeded", justify="right")
    table.add_column("retried", justify="right")
    table.add_column("dead", justify="right")
    table.add_column("cancelled", justify="right")
    table.add_column("jobs/s", justify="right")
    table.add_row(
        str(summary.submitted),
        str(summary.succeeded),
        str(summary.retried),
        str(summary.dead),
        str(summary.cancelled),
        f"{summary.throughput:,.0f}",
    )
    console.print(table)
    if dead:
        console.print("[bold]dead letters[/] (first few):")
        for line in dead:
            console.print(f"  {line}")
