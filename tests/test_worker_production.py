"""`actorq worker` as a service manager runs it: real processes, restarts, crashes, secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_until
from tests.redis_server import RedisServer
from tests.test_cli import ROOT, TOKEN, actorq_command, free_port

PASSWORD = "hunter2-" + uuid.uuid4().hex[:8]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no journal or state directory chosen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": pythonpath, **extra}


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    cwd: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*actorq_command(), *args, "--url", self.url, "--token", TOKEN],
            check=False,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.cwd,
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def launch(cwd: Path, *options: str, wait: bool = True) -> Worker:
    """`actorq worker tests.cli_app:system --http ...` in `cwd`; waits until it answers."""
    port = free_port()
    log = cwd / f"worker-{port}.log"
    command = [*actorq_command(), "worker", "tests.cli_app:system"]
    command += ["--http", f"127.0.0.1:{port}", "--token", TOKEN, *options]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=clean_env(), stdout=output, stderr=subprocess.STDOUT
        )
    worker = Worker(process, f"http://127.0.0.1:{port}", log, cwd)
    if wait:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"worker exited {process.returncode}: {worker.text()}")
            try:
                return httpx.get(f"{worker.url}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=60, interval=0.05)
    return worker


def run_worker(cwd: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run `actorq worker` to its end (for the runs that must refuse to start)."""
    return subprocess.run(
        [*actorq_command(), "worker", "tests.cli_app:system", *options],
        check=False,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def submit_delayed(worker: Worker) -> str:
    submitted = worker.cli("submit", "add", "[1, 2]", "--delay", "3600")
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def status_of(worker: Worker, job_id: str) -> str:
    shown = worker.cli("status", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["status"])


def test_the_default_journal_keeps_a_delayed_job_across_a_restart(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """With no --journal, a job accepted before a graceful restart is still there after it."""
    first = launch(tmp_path)
    workers.append(first)
    state = tmp_path / "actorq-state"
    assert f"file journal in {state}" in first.text()
    job_id = submit_delayed(first)
    assert first.stop() == 0

    second = launch(tmp_path)
    workers.append(second)
    assert status_of(second, job_id) == "scheduled"
    assert second.stop() == 0


def test_the_memory_journal_says_jobs_do_not_survive(tmp_path: Path, workers: list[Worker]) -> None:
    """--journal memory is honoured, and the start line says what it costs."""
    worker = launch(tmp_path, "--journal", "memory")
    workers.append(worker)
    wait_until(lambda: "running" in worker.text())
    running = [line for line in worker.text().splitlines() if "actorq worker running" in line]
    assert "do not survive a restart" in running[0]
    assert not (tmp_path / "actorq-state").exists()


def test_a_second_worker_on_redis_stands_by_and_takes_over_after_sigkill(
    redis_url: str, tmp_path: Path, workers: list[Worker]
) -> None:
    """A second node waits while the leader lives, and leads once SIGKILL ends its lease."""
    journal = f"{redis_url}&lease=2"
    first = launch(tmp_path, "--journal", journal)
    workers.append(first)
    job_id = submit_delayed(first)

    second = launch(tmp_path, "--journal", journal, wait=False)
    workers.append(second)
    wait_until(lambda: "standing by" in second.text(), timeout=30)
    assert "actorq worker running" not in second.text()

    first.process.kill()
    first.process.wait()
    wait_until(lambda: "actorq worker running" in second.text(), timeout=30)
    assert status_of(second, job_id) == "scheduled"
    assert second.stop() == 0


def test_a_corrupt_file_journal_fails_once_naming_the_file_and_offset(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """A damaged record mid-journal: exit 3 with one message, no restarts, no "running"."""
    journal = tmp_path / "journal"
    worker = launch(tmp_path, "--journal", str(journal))
    workers.append(worker)
    submit_delayed(worker)
    submit_delayed(worker)
    assert worker.stop() == 0
    segment = sorted((journal / "dispatcher").glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[10] ^= 0xFF  # inside the first record's payload; a later record follows it
    segment.write_bytes(bytes(data))

    done = run_worker(tmp_path, "--journal", str(journal))
    assert done.returncode == 3
    reports = [line for line in done.stderr.splitlines() if "corrupted" in line]
    assert len(reports) == 1, done.stderr
    assert str(segment) in reports[0]
    assert "offset 0" in reports[0]
    assert "running" not in done.stderr
    assert "Traceback" not in done.stderr


def test_no_log_line_or_error_shows_the_redis_password_or_the_token(
    tmp_path: Path, workers: list[Worker]
) -> None:
    """Debug logs, a second node standing by and a usage error all show *** instead."""
    server = RedisServer()  # its own server: this one needs a password
    try:
        server.client().config_set("requirepass", PASSWORD)
        journal = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0?namespace=secret&lease=2"
        worker = launch(tmp_path, "--journal", journal, "--log-level", "debug")
        workers.append(worker)
        waited = worker.cli("submit", "add", "[1, 2]", "--wait", "30")
        assert waited.stdout.strip() == "3", waited.stderr
        standby = launch(tmp_path, "--journal", journal, "--log-level", "debug", wait=False)
        workers.append(standby)
        wait_until(lambda: "standing by" in standby.text(), timeout=30)
        assert standby.stop() == 0
        typo = run_worker(tmp_path, "--journal", f"redis:/:{PASSWORD}@127.0.0.1")
        assert typo.returncode == 2
        assert worker.stop() == 0
        seen = worker.text() + standby.text() + typo.stderr
        assert "redis://:***@127.0.0.1" in seen
        assert PASSWORD not in seen
        assert TOKEN not in seen
    finally:
        server.stop()


def test_a_journal_url_with_an_unknown_scheme_is_a_usage_error(tmp_path: Path) -> None:
    """bogus://x exits 2 naming the accepted forms, and creates nothing."""
    done = run_worker(tmp_path, "--journal", "bogus://x")
    assert done.returncode == 2
    assert "unknown scheme 'bogus'" in done.stderr
    assert "redis://" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == []


def test_python_dash_m_actorq_is_the_cli() -> None:
    """`python -m actorq --help` shows the CLI's help."""
    done = subprocess.run(
        [sys.executable, "-m", "actorq", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"Usage: actorq \[OPTIONS\] COMMAND", done.stdout)
    assert "worker" in done.stdout
