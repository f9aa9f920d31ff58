"""`async def` tasks: awaited on an event loop, with timeouts and cancel() cancelling them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from actorq import JobCancelled, JobFailed, JobStatus, RestartPolicy, current_job
from actorq.tasks import AsyncTask, Task
from tests import pool_tasks
from tests.helpers import MakeSystem


def test_an_async_task_runs_and_its_result_is_encoded_like_a_sync_one(
    make_system: MakeSystem,
) -> None:
    """The awaited value comes back; current_job() works inside the coroutine."""
    system = make_system()

    @system.task
    async def greet(name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        job = current_job()
        return {"hello": name, "attempt": job.attempt, "loop": threading.current_thread().name}

    task: Task[[str], dict[str, Any]] = greet  # R is the awaited type (mypy checks this line)
    assert isinstance(greet, AsyncTask)
    with system:
        value = task.submit("ada").result(timeout=10)
    assert value == {"hello": "ada", "attempt": 1, "loop": "actorq-loop"}


def test_async_tasks_of_several_workers_run_concurrently_on_one_loop(
    make_system: MakeSystem,
) -> None:
    """Two jobs that each wait for the other can only finish if both run at once."""
    system = make_system(workers=2)
    arrived: list[str] = []
    both = threading.Event()

    @system.task("meet")
    async def meet(who: str) -> str:
        arrived.append(who)
        if len(arrived) == 2:
            both.set()
        while not both.is_set():
            await asyncio.sleep(0.005)
        return who

    with system:
        handles = [system.submit("meet", w) for w in ("a", "b")]
        assert sorted(h.result(timeout=10) for h in handles) == ["a", "b"]


def test_an_async_task_past_its_timeout_is_cancelled(make_system: MakeSystem) -> None:
    """The coroutine sees CancelledError at the deadline; the attempt fails as timed out."""
    system = make_system()
    cancelled = threading.Event()

    @system.task("stall", timeout=0.3, policy=RestartPolicy(max_restarts=0))
    async def stall() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with system:
        handle = system.submit("stall")
        with pytest.raises(JobFailed, match="timed out"):
            handle.result(timeout=10)
        assert cancelled.wait(10)
        assert system.job(handle.id).status is JobStatus.DEAD


def test_cancel_cancels_a_running_coroutine(make_system: MakeSystem) -> None:
    system = make_system()
    started = threading.Event()
    cancelled = threading.Event()

    @system.task("wait_forever")
    async def wait_forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with system:
        handle = system.submit("wait_forever")
        assert started.wait(10)
        assert system.cancel(handle.id)
        with pytest.raises(JobCancelled):
            handle.result(timeout=10)
        assert cancelled.wait(10)


def test_async_failures_carry_their_lineage_to_the_policy(make_system: MakeSystem) -> None:
    """give_up_on matches the coroutine's exception class; retry_on retries the others."""
    system = make_system()
    attempts: dict[str, int] = {"value": 0, "runtime": 0}

    policy = RestartPolicy(max_restarts=2, give_up_on=(ValueError,))

    @system.task("raises", policy=policy)
    async def raises(kind: str) -> None:
        attempts[kind] += 1
        await asyncio.sleep(0)
        if kind == "value":
            raise ValueError("bad value")
        raise RuntimeError("flaky")

    with system:
        value = system.submit("raises", "value")
        with pytest.raises(JobFailed, match="ValueError: bad value"):
            value.result(timeout=10)
        runtime = system.submit("raises", "runtime")
        with pytest.raises(JobFailed, match="RuntimeError: flaky"):
            runtime.result(timeout=10)
    assert attempts == {"value": 1, "runtime": 3}


def test_async_tasks_run_in_a_process_pool_too(make_system: MakeSystem) -> None:
    system = make_system(workers=1, pool="processes")
    system.task("async_add")(pool_tasks.async_add)
    with system:
        assert system.submit("async_add", 2, 3).result(timeout=20) == 5


def test_the_retry_after_a_timeout_runs_unflagged(make_system: MakeSystem) -> None:
    """Attempt 1 is cancelled at its deadline; attempt 2 runs to its end, not cancelled at once."""
    system = make_system()

    @system.task("second_time_lucky", timeout=0.3, policy=RestartPolicy(max_restarts=1))
    async def second_time_lucky() -> str:
        if current_job().attempt == 1:
            await asyncio.sleep(30)
        assert not current_job().cancelled
        await asyncio.sleep(0)
        return "second"

    with system:
        handle = system.submit("second_time_lucky")
        assert handle.result(timeout=10) == "second"
        assert system.job(handle.id).attempts == 2
