"""The real `actorq` executable: a worker process serving HTTP, and the client commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "cli-token-5678"


def actorq_command() -> list[str]:
    venv = Path(sys.executable).parent / "actorq"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("actorq")
    return [found] if found else [sys.executable, "-m", "actorq.service.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "ACTORQ_URL": self.url, "ACTORQ_API_TOKEN": TOKEN, **extra}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*actorq_command(), *args],
            check=False,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    def draining(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
        except httpx.TransportError:
            return True  # already past draining: the server is gone
        return response.status_code == 503


def start_worker(folder: Path, *extra: str) -> Worker:
    port = free_port()
    journal = str(folder / "journal")  # the embedded default: a FileJournal
    log = folder / f"worker-{port}.log"
    with log.open("wb") as output:  # a file, not a pipe nobody reads: a full pipe blocks the worker
        process = subprocess.Popen(
            [
                *actorq_command(),
                "worker",
                "tests.cli_app:system",
                "--http",
                f"127.0.0.1:{port}",
                "--journal",
                journal,
                "--token",
                TOKEN,
                "--grace",
                "20",
                *extra,
            ],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, f"http://127.0.0.1:{port}", log)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"worker exited {process.returncode}: {log.read_text()}")
        try:
            return httpx.get(f"{worker.url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, timeout=30, interval=0.05)
    return worker


def stop_worker(worker: Worker) -> None:
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = start_worker(tmp_path, "--workers", "3", "--queues", "default,bulk,urgent")
    yield w
    stop_worker(w)


def test_help_on_every_command_lists_the_exit_codes() -> None:
    """`--help` works on each command and documents the exit codes scripts rely on."""
    commands = [
        [],
        ["demo"],
        ["worker"],
        ["serve"],
        ["submit"],
        ["status"],
        ["jobs"],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "retry"],
        ["dlq", "purge"],
        ["queues"],
    ]
    for command in commands:
        result = subprocess.run(
            [*actorq_command(), *command, "--help"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "Exit codes" in result.stdout, command


def test_submit_wait_and_status(worker: Worker) -> None:
    """submit --wait prints the result; submit alone prints an id that status shows."""
    waited = worker.run("submit", "add", "[2, 3]", "--wait", "30")
    assert (waited.returncode, waited.stdout.strip()) == (0, "5"), waited.stderr

    submitted = worker.run("submit", "add", "[]", "--kwargs", '{"a": 1, "b": 1}', "--queue", "bulk")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    def succeeded() -> dict[str, object] | None:
        shown = worker.run("status", job_id, "--json")
        assert shown.returncode == 0, shown.stderr
        job: dict[str, object] = json.loads(shown.stdout)
        return job if job["status"] == "succeeded" else None

    job = wait_until(succeeded, timeout=30)
    assert job is not None
    assert (job["result"], job["queue"]) == (2, "bulk")
    table = worker.run("status", job_id)
    assert table.returncode == 0
    assert "succeeded" in table.stdout
    # Times are ISO 8601 with their zone and how long ago; no raw epoch floats.
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \(.+ ago\)"
    assert re.search(rf"created_at\s+{iso}", table.stdout), table.stdout
    assert re.search(r"ran for\s+\d+(\.\d)? m?s", table.stdout), table.stdout
    assert not re.search(r"\d{10}\.\d", table.stdout)


def test_a_failed_job_goes_to_the_dlq_and_can_be_retried_and_purged(worker: Worker) -> None:
    """submit --wait exits 1 for a dead job; dlq list shows it; retry and purge work on it."""
    flag = worker.log.parent / "fail-now"
    flag.touch()
    failed = worker.run("submit", "fail_when", json.dumps([str(flag)]), "--wait", "30")
    assert failed.returncode == 1
    assert "on purpose" in failed.stderr

    listed = json.loads(worker.run("dlq", "list", "--json").stdout)
    assert [job["task"] for job in listed] == ["fail_when"]
    job_id = listed[0]["id"]
    assert job_id in worker.run("dlq", "list").stdout

    # The retried run waits for the flag, so it cannot die before the retry has answered
    # (a run that does races with retry_dead; reported against ActorSystem.retry_dead).
    flag.unlink()
    retried = worker.run("dlq", "retry", job_id)
    assert (retried.returncode, retried.stdout.strip()) == (0, job_id)
    assert json.loads(worker.run("dlq", "list", "--json").stdout) == []
    flag.touch()
    wait_until(lambda: worker.run("dlq", "list", "--json").stdout.count(job_id) == 1, timeout=30)

    purged = worker.run("dlq", "purge", job_id)
    assert (purged.returncode, purged.stdout.strip()) == (0, "1")
    assert json.loads(worker.run("dlq", "list", "--json").stdout) == []
    assert worker.run("dlq", "retry", job_id).returncode == 1


def test_queues_lists_every_queue_the_worker_declares(worker: Worker) -> None:
    """queues shows each queue, as a table and as JSON, including one added by --queues."""
    table = worker.run("queues")
    assert table.returncode == 0, table.stderr
    assert "default" in table.stdout
    assert "urgent" in table.stdout
    info = json.loads(worker.run("queues", "--json").stdout)
    assert [q["name"] for q in info["queues"]] == ["default", "bulk", "urgent"]


def test_worker_options_override_the_system(worker: Worker) -> None:
    """--workers and --queues reach the system; metrics are on by default."""
    # Logged just after the HTTP API answers its first request: wait for it.
    wait_until(lambda: "3 workers, queues default,bulk,urgent" in worker.log.read_text())
    assert (
        worker.run("submit", "add", "[1, 2]", "--queue", "urgent", "--wait", "30").stdout == "3\n"
    )
    metrics = httpx.get(f"{worker.url}/metrics")
    assert metrics.status_code == 200
    assert 'actorq_jobs_submitted_total{queue="urgent",task="add"} 1.0' in metrics.text


def test_exit_codes(worker: Worker) -> None:
    """1 not found, 2 usage or refused input, 3 unreachable: each as documented."""
    assert worker.run("status", "no-such-job").returncode == 1
    assert worker.run("submit", "no-such-task").returncode == 2
    assert worker.run("submit", "add", "not json").returncode == 2
    assert worker.run("submit", "add", '{"a": 1}').returncode == 2
    assert worker.run("submit", "add", "[1, 2]", "--priority", "1000").returncode == 2
    assert worker.run("queues", ACTORQ_API_TOKEN="wrong").returncode == 2
    assert worker.run("queues", "--url", f"http://127.0.0.1:{free_port()}").returncode == 3
    not_a_url = worker.run("queues", "--url", "not-a-url")
    assert not_a_url.returncode == 2
    assert "--url" in not_a_url.stderr
    long_name = "no-such-task-" + "x" * 200
    refused = worker.run("submit", long_name)
    assert refused.returncode == 2
    # Not on a terminal: one line per message, never wrapped at 80 columns.
    assert [line for line in refused.stderr.splitlines() if long_name in line], refused.stderr
    assert worker.run("dlq", "purge").returncode == 2  # all of them needs --yes here
    bad_target = worker.run("worker", "tests.cli_app:nothing_here")
    assert bad_target.returncode == 2
    assert "nothing_here" in bad_target.stderr


def test_sigterm_lets_the_job_in_flight_finish(tmp_path: Path) -> None:
    """On SIGTERM the worker stops accepting, the running job completes, and it exits 0."""
    worker = start_worker(tmp_path)
    try:
        submitted = worker.run("submit", "slow", json.dumps([str(tmp_path), 30]))
        job_id = submitted.stdout.strip()
        wait_until((tmp_path / "started").exists, timeout=30)

        worker.process.send_signal(signal.SIGTERM)
        wait_until(worker.draining, timeout=30)  # not ready any more, still finishing
        assert not (tmp_path / "done").exists()
        (tmp_path / "release").touch()

        assert worker.process.wait(timeout=30) == 0
        assert (tmp_path / "done").read_text() == "finished"
    finally:
        stop_worker(worker)
    again = start_worker(tmp_path)  # the outcome is durable: a new worker on the journal knows it
    try:
        shown = json.loads(again.run("status", job_id, "--json").stdout)
        assert (shown["status"], shown["result"]) == ("succeeded", "done")
    finally:
        stop_worker(again)


def test_a_second_interrupt_exits_at_once(tmp_path: Path) -> None:
    """Ctrl-C starts a graceful stop; a second Ctrl-C exits 130 without waiting for the job."""
    worker = start_worker(tmp_path)
    try:
        worker.run("submit", "slow", json.dumps([str(tmp_path), 30]))
        wait_until((tmp_path / "started").exists, timeout=30)
        worker.process.send_signal(signal.SIGINT)
        wait_until(worker.draining, timeout=30)
        worker.process.send_signal(signal.SIGINT)
        assert worker.process.wait(timeout=30) == 130
        assert not (tmp_path / "done").exists()
    finally:
        (tmp_path / "release").touch()
        stop_worker(worker)


def test_jobs_and_dlq_list_page_with_limit_and_after(worker: Worker) -> None:
    ids = [worker.run("submit", "add", "[1, 2]").stdout.strip() for _ in range(3)]
    dead = [worker.run("submit", "fail", "--wait", "30") for _ in range(3)]
    assert [d.returncode for d in dead] == [1, 1, 1]
    first = json.loads(worker.run("jobs", "--task", "add", "--limit", "2", "--json").stdout)
    assert [j["id"] for j in first] == ids[:2]
    shown = worker.run("jobs", "--task", "add", "--limit", "2")
    assert f"--after {ids[1]}" in shown.stderr
    rest = worker.run("jobs", "--task", "add", "--limit", "2", "--after", ids[1], "--json")
    assert [j["id"] for j in json.loads(rest.stdout)] == ids[2:]
    letters = json.loads(worker.run("dlq", "list", "--limit", "2", "--json").stdout)
    assert len(letters) == 2
    more = worker.run("dlq", "list", "--limit", "2", "--after", letters[-1]["id"], "--json")
    assert len(json.loads(more.stdout)) == 1
    assert worker.run("dlq", "list", "--limit", "0").returncode == 2
