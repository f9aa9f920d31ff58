"""Soak: SIGKILL a real worker process again and again while it takes jobs, then check.

    python -m bench.soak --journal file --kills 1000 --seed 1
    python -m bench.soak --journal redis --kills 1000 --seed 1   # Redis with AOF always

Each round starts a child process: an ActorSystem on the journal, with a
producer in it that submits every kind of job (at least once, at most once,
failing into the dead letters, delayed, with idempotency keys, in batches,
and dead-letter retries). An acknowledgement counts only once the child has
written it to a ledger file and fsynced it. The parent kills the child with
SIGKILL at a random moment (sometimes during its recovery), and on Redis also
kills and restarts redis-server itself some of the time.

At the end a last child recovers the journal, lets every job finish, and
checks each acknowledged job against it: every one known, terminal
(succeeded, dead or cancelled) exactly once, with the outcome its kind
allows; every idempotent resubmission answered with the first job; no job
known to the journal that nobody submitted. It prints kills done,
acknowledged jobs and violations, and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS = ("plain", "once", "doomed", "delayed", "keyed", "batch")
OWNER = "soak-owner"  # one child at a time: a restarted child reclaims its lease at once


# -- the child: a worker and its producer ----------------------------------------------


def build(journal: Any) -> Any:
    from actorq import ActorSystem, Backoff, RestartPolicy

    system = ActorSystem(workers=4, journal=journal, retention=24 * 3600.0)
    quick = RestartPolicy(max_restarts=1, backoff=Backoff.constant(0.01))

    @system.task("plain")
    def plain(n: int) -> int:
        return n

    @system.task("once", delivery="at_most_once")
    def once(n: int) -> int:
        return n

    @system.task("doomed", policy=quick)
    def doomed(n: int) -> None:
        raise ValueError(f"doomed {n}")

    return system


def open_journal(spec: str) -> Any:
    if spec.startswith("redis://"):
        from actorq.persistence.redis import RedisJournal

        return RedisJournal.from_url(spec, owner=OWNER)
    return spec


def child(spec: str, ledger: Path, seed: int) -> None:
    rng = random.Random(seed)
    system = build(open_journal(spec))
    system.start()
    with ledger.open("a") as out:

        def ack(*rows: tuple[str, str, str]) -> None:
            out.write("".join(f"{job_id} {kind} {extra}\n" for job_id, kind, extra in rows))
            out.flush()
            os.fsync(out.fileno())  # only now does the acknowledgement count

        n = 0
        while True:
            n += 1
            kind = rng.choice(KINDS)
            if kind == "batch":
                handles = system.submit_many("plain", [[n]] * 5)
                ack(*[(h.id, "plain", "-") for h in handles])
            elif kind == "delayed":
                ack((system.submit("plain", n, delay=rng.uniform(0.01, 0.5)).id, "plain", "-"))
            elif kind == "keyed":
                key = f"key-{seed}-{n}"
                first = system.submit("plain", n, idempotency_key=key)
                ack((first.id, "plain", key))
                again = system.submit("plain", n, idempotency_key=key)
                ack((again.id, "plain", key))
            else:
                ack((system.submit(kind, n).id, kind, "-"))
            if n % 25 == 0:
                dead = system.dead_letters(limit=1)
                if dead:
                    system.retry_dead(dead[0].id)
                    ack((dead[0].id, "retried", "-"))


def verify(spec: str, ledger: Path) -> dict[str, Any]:
    from actorq import JobNotFound, JobStatus

    system = build(open_journal(spec))
    system.start()
    try:
        if not system.join(timeout=120):
            return {"violations": ["jobs still unfinished 120 s after the last restart"]}
        acked: dict[str, str] = {}
        keys: dict[str, set[str]] = {}
        for line in ledger.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) != 3:
                continue  # a line cut by a kill was never acknowledged
            job_id, kind, key = parts
            if kind != "retried":
                acked[job_id] = kind
            if key != "-":
                keys.setdefault(key, set()).add(job_id)
        violations: list[str] = []
        allowed = {
            "plain": {JobStatus.SUCCEEDED},
            "once": {JobStatus.SUCCEEDED, JobStatus.DEAD},  # dead: lost in a crash, never rerun
            "doomed": {JobStatus.DEAD},
        }
        seen: set[str] = set()
        for job_id, kind in acked.items():
            try:
                info = system.job(job_id)
            except JobNotFound:
                violations.append(f"{job_id} ({kind}) acknowledged, then lost")
                continue
            seen.add(job_id)
            if info.status not in allowed[kind]:
                violations.append(f"{job_id} ({kind}) ended {info.status.value}")
            if kind == "once" and info.attempts > 1:
                violations.append(f"{job_id} (at most once) ran {info.attempts} times")
        for key, ids in keys.items():
            if len(ids) != 1:
                violations.append(f"idempotency key {key} answered {len(ids)} different jobs")
        known = {info.id for info in _all_jobs(system)}
        invented = known - set(acked)
        # A submission acknowledged by the journal but killed before its ledger
        # line was written is not invented: the producer never counted it.
        unacknowledged = len(invented)
        terminal = sum(1 for job_id in seen if system.job(job_id).status.terminal)
        return {
            "acknowledged": len(acked),
            "terminal": terminal,
            "journaled_not_acknowledged": unacknowledged,
            "violations": violations,
        }
    finally:
        system.stop(timeout=5)


def _all_jobs(system: Any) -> list[Any]:
    jobs: list[Any] = []
    after = None
    while True:
        page = system.jobs(limit=1000, after=after)
        jobs += page
        if len(page) < 1000:
            return jobs
        after = page[-1].id


# -- the parent: kills --------------------------------------------------------------------


class Redis:
    def __init__(self, folder: Path) -> None:
        from bench.peers.redis_server import free_port, ping

        self._ping = ping
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0?namespace=soak"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self._ping(self.port):
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def spawn(spec: str, ledger: Path, seed: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.soak", "--child", spec, str(ledger), str(seed)]
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", choices=("file", "redis"), default="file")
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=None, help="Stop killing after this.")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-kills", type=float, default=0.05, help="Share of rounds.")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--verify", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        spec, ledger, seed = options.child
        child(spec, Path(ledger), int(seed))
        return 0
    if options.verify:
        print(json.dumps(verify(options.verify[0], Path(options.verify[1]))))
        return 0
    rng = random.Random(options.seed)
    folder = Path(tempfile.mkdtemp(prefix="actorq-soak-"))
    redis = Redis(folder) if options.journal == "redis" else None
    spec = redis.url if redis is not None else str(folder / "journal")
    ledger, log = folder / "ledger", folder / "children.log"
    started = time.monotonic()
    kills = redis_kills = 0
    try:
        while kills < options.kills:
            if options.minutes is not None and time.monotonic() - started > options.minutes * 60:
                break
            process = spawn(spec, ledger, rng.getrandbits(32), log)
            # Mostly while producing; sometimes during recovery.
            time.sleep(rng.uniform(0.05, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            if kills % 100 == 0:
                print(f"{kills} kills", file=sys.stderr, flush=True)
            if redis is not None and rng.random() < options.redis_kills:
                redis.kill()
                redis.start()
                redis_kills += 1
        checked = subprocess.run(
            [sys.executable, "-m", "bench.soak", "--verify", spec, str(ledger)],
            capture_output=True,
            text=True,
            check=False,
        )
        if checked.returncode != 0:
            print(checked.stdout, checked.stderr, file=sys.stderr)
            return 1
        report = json.loads(checked.stdout.strip().splitlines()[-1])
    finally:
        if redis is not None:
            redis.kill()
    minutes = (time.monotonic() - started) / 60
    print(
        f"journal {options.journal}: {kills} kills ({redis_kills} of redis-server) in"
        f" {minutes:.1f} min; {report.get('acknowledged', 0)} acknowledged jobs,"
        f" {report.get('terminal', 0)} terminal; {len(report['violations'])} violations"
    )
    for violation in report["violations"][:20]:
        print("  ", violation)
    if report["violations"]:
        print(f"kept for inspection: {folder}")
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
