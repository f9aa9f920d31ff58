"""The process pool: jobs run in child processes, which can be killed, die and be recycled."""

from __future__ import annotations

import functools
import json
import os
import select
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actorq import ActorSystem, JobCancelled, JobFailed, JobStatus, RestartPolicy
from actorq.errors import TaskNotImportable
from tests import pool_tasks
from tests.helpers import MakeSystem, wait_until


@pytest.fixture
def make_system(make_system: MakeSystem) -> MakeSystem:
    return functools.partial(make_system, workers=1, pool="processes")


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Block until process `pid` has exited (a pidfd becomes readable), or fail."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        assert readable, f"process {pid} still alive after {timeout}s"
    finally:
        os.close(fd)


def test_jobs_run_in_child_processes_and_return_results(make_system: MakeSystem) -> None:
    """Results come back decoded; the handler ran in another process, not this one."""
    system = make_system(workers=2)
    square = system.task("square")(pool_tasks.square)
    system.task("pid")(pool_tasks.pid)
    with system:
        handles = [square.submit(i) for i in range(20)]
        assert [h.result(timeout=20) for h in handles] == [i * i for i in range(20)]
        child = system.submit("pid").result(timeout=20)
        assert isinstance(child, int) and child != os.getpid()


def test_a_job_past_its_timeout_is_killed_and_its_side_effect_never_happens(
    make_system: MakeSystem, tmp_path: Path
) -> None:
    """SIGKILL at the deadline: the write the handler would do after sleeping never happens."""
    system = make_system()
    system.task("hang", timeout=0.5, policy=RestartPolicy(max_restarts=0))(
        pool_tasks.hang_then_write
    )
    with system:
        handle = system.submit("hang", str(tmp_path), 3.0)
        with pytest.raises(JobFailed, match="timed out"):
            handle.result(timeout=20)
        child = int((tmp_path / "pid").read_text())
        wait_gone(child)  # killed, not left to finish its sleep
        assert not (tmp_path / "late").exists()
        # The worker carries on with a new child.
        system.task("square")(pool_tasks.square)
        assert system.submit("square", 7).result(timeout=20) == 49


def test_a_child_that_exits_mid_job_is_a_failed_attempt_then_retried(
    make_system: MakeSystem, tmp_path: Path
) -> None:
    """os._exit in the handler: attempt 1 fails (WorkerProcessDied), attempt 2 succeeds."""
    system = make_system()
    system.task("exit_once", policy=RestartPolicy(max_restarts=1))(pool_tasks.exit_first_attempt)
    with system:
        handle = system.submit("exit_once", str(tmp_path))
        assert handle.result(timeout=20) == "second life"
        assert system.job(handle.id).attempts == 2


def test_a_child_that_always_dies_ends_in_the_dead_letters(make_system: MakeSystem) -> None:
    """Deaths count against the policy like exceptions: past max_restarts, a dead letter."""
    system = make_system()
    system.task("always_exit", policy=RestartPolicy(max_restarts=2))(pool_tasks.always_exit)
    with system:
        handle = system.submit("always_exit")
        with pytest.raises(JobFailed, match=r"WorkerProcessDied.*exit code 7"):
            handle.result(timeout=20)
        info = system.job(handle.id)
        assert (info.status, info.attempts) == (JobStatus.DEAD, 3)
        wait_until(lambda: [d.id for d in system.dead_letters()] == [handle.id])


def test_a_child_killed_by_a_signal_is_a_failed_attempt(
    make_system: MakeSystem, tmp_path: Path
) -> None:
    """SIGKILL from outside while the job runs: the attempt fails and the job is retried."""
    system = make_system()
    system.task("wait", policy=RestartPolicy(max_restarts=1))(pool_tasks.wait_for_file)
    gate = tmp_path / "gate"
    with system:
        handle = system.submit("wait", str(gate))
        started = Path(str(gate) + ".started")
        first = int(wait_until(lambda: started.exists() and started.read_text()))
        started.unlink()
        os.kill(first, 9)
        second = int(wait_until(lambda: started.exists() and started.read_text()))
        assert second != first
        gate.write_text("go")
        assert handle.result(timeout=20) == "released"
        assert system.job(handle.id).attempts == 2


def test_max_jobs_per_child_recycles_the_child(make_system: MakeSystem) -> None:
    """With max_jobs_per_child=2, one worker's jobs run in pairs per child pid."""
    system = make_system(max_jobs_per_child=2)
    system.task("pid")(pool_tasks.pid)
    with system:
        pids = [system.submit("pid").result(timeout=20) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len({pids[0], pids[2], pids[4]}) == 3


def test_cancel_kills_the_running_child(make_system: MakeSystem, tmp_path: Path) -> None:
    """cancel() of a running job in a process pool kills its child; the job ends cancelled."""
    system = make_system()
    system.task("wait")(pool_tasks.wait_for_file)
    gate = tmp_path / "gate"
    with system:
        handle = system.submit("wait", str(gate))
        started = Path(str(gate) + ".started")
        child = int(wait_until(lambda: started.exists() and started.read_text()))
        assert system.cancel(handle.id)
        with pytest.raises(JobCancelled):
            handle.result(timeout=20)
        wait_gone(child)


def test_a_task_the_child_cannot_find_fails_clearly(make_system: MakeSystem) -> None:
    """A function the parent has but the child's import lacks: UnknownTask, not retried."""
    system = make_system()
    system.task("parent_only")(pool_tasks.parent_only)
    with system:
        handle = system.submit("parent_only")
        with pytest.raises(JobFailed, match=r"not defined in a worker process.*parent_only"):
            handle.result(timeout=20)
        assert system.job(handle.id).attempts == 1


def test_an_unencodable_result_fails_clearly(make_system: MakeSystem) -> None:
    system = make_system()
    system.task("unencodable")(pool_tasks.unencodable)
    with system:
        handle = system.submit("unencodable")
        with pytest.raises(JobFailed, match="cannot be encoded with msgpack"):
            handle.result(timeout=20)
        assert system.job(handle.id).attempts == 1


def test_functions_a_child_cannot_import_are_refused_up_front(make_system: MakeSystem) -> None:
    """A closure is refused at registration, or at start when the pool is chosen later."""
    system = make_system()

    def local() -> None:
        return None

    with pytest.raises(TaskNotImportable, match="top level"):
        system.task("local")(local)
    assert "local" not in system.tasks

    threads = ActorSystem(workers=1, journal="memory")
    threads.task("local")(local)
    threads.configure(pool="processes")
    with pytest.raises(TaskNotImportable, match="local"):
        threads.start()
    assert not threads.running


def test_pool_options_are_checked(make_system: MakeSystem) -> None:
    with pytest.raises(ValueError, match="pool must be one of"):
        ActorSystem(pool="greenlets")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_jobs_per_child"):
        ActorSystem(pool="processes", max_jobs_per_child=0)
    with pytest.raises(ValueError, match="applies to pool='processes' only"):
        ActorSystem(max_jobs_per_child=5)


def _ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        status = Path(f"/proc/{pid}/status").read_text()
        pid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        chain.append(pid)
    return chain


def test_the_worker_command_runs_jobs_in_child_processes(tmp_path: Path) -> None:
    """`actorq worker --pool processes`: a job runs in a descendant of the worker, end to end."""
    from tests.test_cli import start_worker, stop_worker

    worker = start_worker(tmp_path, "--pool", "processes", "--workers", "2")
    try:
        waited = worker.run("submit", "add", "[2, 3]", "--wait", "30")
        assert (waited.returncode, waited.stdout.strip()) == (0, "5"), waited.stderr
        folder = tmp_path / "slow"
        folder.mkdir()
        submitted = worker.run("submit", "slow", json.dumps([str(folder)]))
        assert submitted.returncode == 0, submitted.stderr
        started = folder / "started"
        child = int(wait_until(lambda: started.exists() and started.read_text(), timeout=30))
        assert child != worker.process.pid
        assert worker.process.pid in _ancestors(child)
        (folder / "release").write_text("go")
        job_id = submitted.stdout.strip()
        shown = worker.run("submit", "add", "[1, 1]", "--wait", "30")
        assert shown.stdout.strip() == "2"

        def finished() -> Any:
            shown = worker.run("status", job_id, "--json")
            job = json.loads(shown.stdout)
            return job if job["status"] == "succeeded" else None

        assert wait_until(finished, timeout=30)["result"] == "done"
    finally:
        stop_worker(worker)
    assert "jobs run in 2 child processes, one per worker" in worker.log.read_text()


def test_the_worker_command_refuses_a_child_limit_without_processes(tmp_path: Path) -> None:
    from tests.test_cli import actorq_command

    result = subprocess.run(
        [*actorq_command(), "worker", "tests.cli_app:system", "--max-jobs-per-child", "3"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "max_jobs_per_child applies to pool='processes' only" in result.stderr


def test_a_job_in_flight_dies_with_its_worker_process(tmp_path: Path) -> None:
    """SIGKILL the worker: its child running a job is gone too, and does nothing after."""
    from tests.test_cli import start_worker

    worker = start_worker(tmp_path, "--pool", "processes", "--workers", "1")
    try:
        folder = tmp_path / "slow"
        folder.mkdir()
        submitted = worker.run("submit", "slow", json.dumps([str(folder)]))
        assert submitted.returncode == 0, submitted.stderr
        started = folder / "started"
        child = int(wait_until(lambda: started.exists() and started.read_text(), timeout=30))
    finally:
        worker.process.kill()
        worker.process.wait()
    wait_gone(child)
    (folder / "release").write_text("go")  # would let a surviving child write `done`
    assert not (folder / "done").exists()


def test_a_task_registered_after_start_that_no_child_can_import_fails_clearly(
    make_system: MakeSystem,
) -> None:
    """Registered while running under a name whose module attribute is another object."""
    system = make_system()
    with system:
        system.task("impostor")(_impostor)
        handle = system.submit("impostor")
        with pytest.raises(JobFailed, match=r"TaskNotImportable.*another object"):
            handle.result(timeout=20)
        assert system.job(handle.id).attempts == 1


def _make_impostor() -> Callable[[], str]:
    def impostor() -> str:
        return "never"

    impostor.__qualname__ = "square"  # claims to be pool_tasks.square, which it is not
    impostor.__module__ = "tests.pool_tasks"
    return impostor


_impostor = _make_impostor()
