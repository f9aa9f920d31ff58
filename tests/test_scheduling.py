"""Which job runs where and when: no head-of-line blocking, priority when a slot frees."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from actorq import ActorSystem


@pytest.fixture
def system() -> Iterator[ActorSystem]:
    system = ActorSystem(workers=4, journal="memory")
    yield system
    system.stop(timeout=5)


def test_quick_jobs_never_wait_behind_a_slow_one(system: ActorSystem) -> None:
    """1 slow job then 40 quick ones on 4 workers: every quick job ends while the slow one runs."""
    release = threading.Event()
    slow_started = threading.Event()
    finished: list[str] = []
    lock = threading.Lock()

    @system.task("slow")
    def slow() -> None:
        slow_started.set()
        assert release.wait(30)
        with lock:
            finished.append("slow")

    @system.task("quick")
    def quick(i: int) -> int:
        with lock:
            finished.append(f"quick-{i}")
        return i

    with system:
        slow_job = system.submit("slow")
        assert slow_started.wait(10)
        handles = [system.submit("quick", i) for i in range(40)]
        # Every quick job completes although the slow one still holds its worker.
        assert [h.result(timeout=10) for h in handles] == list(range(40))
        assert "slow" not in finished
        release.set()
        slow_job.result(timeout=10)
    assert finished[-1] == "slow"


def test_quick_jobs_do_not_wait_behind_a_task_that_turned_slow(system: ActorSystem) -> None:
    """A task known to be quick that blocks once holds back no job but itself."""
    release = threading.Event()
    blocked = threading.Event()

    @system.task("sometimes_slow")
    def sometimes_slow(block: bool) -> None:
        if block:
            blocked.set()
            assert release.wait(30)

    with system:
        for h in [system.submit("sometimes_slow", False) for _ in range(200)]:
            h.result(timeout=10)  # the task is now known as quick
        stuck = system.submit("sometimes_slow", True)
        assert blocked.wait(10)
        later = [system.submit("sometimes_slow", False) for _ in range(200)]
        deadline = time.monotonic() + 10
        for h in later:
            h.result(timeout=max(0.1, deadline - time.monotonic()))
        release.set()
        stuck.result(timeout=10)


def test_priority_is_decided_when_a_slot_frees() -> None:
    """One busy worker; low, high, mid submitted in that order run high, mid, low, FIFO within."""
    system = ActorSystem(workers=1, journal="memory")
    release = threading.Event()
    entered = threading.Event()
    order: list[str] = []

    @system.task("block")
    def block() -> None:
        entered.set()
        assert release.wait(30)

    @system.task("record")
    def record(name: str) -> None:
        order.append(name)

    with system:
        system.submit("block")
        assert entered.wait(10)
        handles = [system.submit("record", f"low-{i}", priority=1) for i in range(3)]
        handles += [system.submit("record", f"high-{i}", priority=9) for i in range(3)]
        handles += [system.submit("record", f"mid-{i}", priority=5) for i in range(3)]
        release.set()
        for h in handles:
            h.result(timeout=10)
    assert order == [
        *(f"high-{i}" for i in range(3)),
        *(f"mid-{i}" for i in range(3)),
        *(f"low-{i}" for i in range(3)),
    ]
