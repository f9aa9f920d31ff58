"""The embedded job system, end to end through the public API."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actorq import (
    ActorSystem,
    Backoff,
    InvalidSubmission,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobStatus,
    NotSerializable,
    PayloadTooLarge,
    RestartPolicy,
    SystemNotRunning,
    UnknownQueue,
    UnknownTask,
    VirtualClock,
    current_job,
)
from actorq.errors import Backpressure
from tests.helpers import MakeSystem, wait_until


class Gate:
    """A handler that blocks until the test opens the gate (never a sleep)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self) -> str:
        self.thread = threading.current_thread()
        self.entered.set()
        assert self.open.wait(10)
        return "through"


def test_submit_and_result(make_system: MakeSystem) -> None:
    """A submitted job runs once and its handle yields the value."""
    system = make_system()
    calls = []

    @system.task("add")
    def add(a: int, b: int) -> int:
        calls.append((a, b))
        return a + b

    with system:
        handle = system.submit("add", 1, 2)
        assert handle.result(timeout=5) == 3
        assert handle.status() is JobStatus.SUCCEEDED
        assert add.submit(3, 4).result(timeout=5) == 7
        info = system.job(handle.id)
        assert (info.task, info.attempts, info.result, info.queue) == ("add", 1, 3, "default")
        assert info.started_at is not None
        assert info.finished_at is not None
    assert sorted(calls) == [(1, 2), (3, 4)]


def test_keyword_arguments_and_options(make_system: MakeSystem) -> None:
    """kwargs reach the handler; submit_with_options and map use the same path."""
    system = make_system()

    @system.task("greet")
    def greet(name: str, punctuation: str = ".") -> str:
        return f"hello {name}{punctuation}"

    with system:
        assert system.submit("greet", "ann", kwargs={"punctuation": "!"}).result(5) == "hello ann!"
        assert greet.submit("bo", punctuation="?").result(5) == "hello bo?"
        assert greet.submit_with_options(["cy"], priority=5).result(5) == "hello cy."
        assert [h.result(5) for h in greet.map([["a"], ["b"]])] == ["hello a.", "hello b."]


def test_retries_follow_the_policy(make_system: MakeSystem) -> None:
    """max_restarts=3 means up to 3 retries: 4 attempts, then dead with the error text."""
    system = make_system()
    attempts: list[int] = []

    @system.task("always_fails", policy=RestartPolicy(max_restarts=3))
    def always_fails() -> None:
        attempts.append(current_job().attempt)
        raise ValueError("nope")

    with system:
        handle = system.submit("always_fails")
        with pytest.raises(JobFailed, match="ValueError: nope"):
            handle.result(timeout=5)
        assert attempts == [1, 2, 3, 4]
        assert system.job(handle.id).status is JobStatus.DEAD
        wait_until(lambda: [d.id for d in system.dead_letters()] == [handle.id])


def test_give_up_on_and_per_submit_policy(make_system: MakeSystem) -> None:
    """give_up_on dead-letters at once; a per-submit policy overrides the task's."""
    system = make_system()
    runs: list[str] = []

    @system.task("fragile", policy=RestartPolicy(max_restarts=5, give_up_on=(KeyError,)))
    def fragile(kind: str) -> None:
        runs.append(kind)
        raise KeyError(kind) if kind == "key" else ValueError(kind)

    with system:
        with pytest.raises(JobFailed):
            system.submit("fragile", "key").result(5)
        assert runs == ["key"]
        runs.clear()
        with pytest.raises(JobFailed):
            system.submit("fragile", "value", policy=RestartPolicy(max_restarts=1)).result(5)
        assert runs == ["value", "value"]


def test_retry_backoff_uses_the_scheduler_and_clock(make_system: MakeSystem) -> None:
    """A retry waits for its backoff on the virtual clock, in the RETRYING status."""
    clock = VirtualClock()
    system = make_system(clock=clock)
    seen: list[int] = []

    @system.task("flaky", policy=RestartPolicy(max_restarts=2, backoff=Backoff.constant(60)))
    def flaky() -> str:
        seen.append(current_job().attempt)
        if len(seen) == 1:
            raise RuntimeError("first time")
        return "ok"

    with system:
        handle = system.submit("flaky")
        wait_until(lambda: handle.status() is JobStatus.RETRYING)
        clock.advance(59)
        assert handle.status() is JobStatus.RETRYING
        clock.advance(1)
        assert handle.result(timeout=5) == "ok"
        assert seen == [1, 2]


def test_delayed_jobs_wait_for_the_clock(make_system: MakeSystem) -> None:
    """delay= keeps a job SCHEDULED until the clock reaches its time."""
    clock = VirtualClock()
    system = make_system(clock=clock)
    system.task("echo")(lambda x: x)
    with system:
        later = system.submit("echo", "later", delay=30)
        now = system.submit("echo", "now")
        assert now.result(5) == "now"
        assert later.status() is JobStatus.SCHEDULED
        clock.advance(30)
        assert later.result(5) == "later"


def test_priorities_then_fifo(make_system: MakeSystem) -> None:
    """Higher priority runs first; within one priority, first in first out."""
    system = make_system(workers=1, prefetch=1)
    order: list[str] = []
    gate = Gate()
    system.task("block")(gate)
    system.task("record")(order.append)
    with system:
        system.submit("block")
        assert gate.entered.wait(5)
        for name, priority in [("low1", -5), ("mid1", 0), ("high", 9), ("mid2", 0), ("low2", -5)]:
            system.submit("record", name, priority=priority)
        gate.open.set()
        assert system.join(5)
    assert order == ["high", "mid1", "mid2", "low1", "low2"]


def test_named_queues_are_served_in_declared_order(make_system: MakeSystem) -> None:
    """Workers take from the first declared queue before the next."""
    system = make_system(workers=1, prefetch=1, queues=["urgent", "bulk"])
    order: list[str] = []
    gate = Gate()
    system.task("block", queue="bulk")(gate)
    system.task("record", queue="bulk")(order.append)
    with system:
        system.submit("block")
        assert gate.entered.wait(5)
        system.submit("record", "bulk1")
        system.submit("record", "urgent1", queue="urgent")
        system.submit("record", "bulk2", priority=50)
        gate.open.set()
        assert system.join(5)
        assert system.stats()["queues"] == {"urgent": 0, "bulk": 0}
    assert order == ["urgent1", "bulk2", "bulk1"]


def test_idempotency_key_returns_the_first_job(make_system: MakeSystem) -> None:
    """A repeated key returns the first job and runs nothing."""
    system = make_system()
    runs: list[int] = []
    system.task("once")(runs.append)
    with system:
        first = system.submit("once", 1, idempotency_key="order-42")
        again = system.submit("once", 1, idempotency_key="order-42")
        assert (again.id, again.existing, first.existing) == (first.id, True, False)
        first.result(5)
        assert system.join(5)
        assert runs == [1]


def test_cancel_scheduled_and_queued(make_system: MakeSystem) -> None:
    """Scheduled and queued jobs cancel at once and never run; finished ones do not cancel."""
    system = make_system(workers=1, prefetch=1)
    runs: list[str] = []
    gate = Gate()
    system.task("block")(gate)
    system.task("record")(runs.append)
    with system:
        system.submit("block")
        assert gate.entered.wait(5)
        queued = system.submit("record", "queued")
        scheduled = system.submit("record", "scheduled", delay=3600)
        assert system.cancel(queued.id)
        assert system.cancel(scheduled.id)
        assert not system.cancel(queued.id)
        assert not system.cancel("no-such-job")
        gate.open.set()
        with pytest.raises(JobCancelled):
            queued.result(5)
        assert scheduled.status() is JobStatus.CANCELLED
        assert system.join(5)
    assert runs == []


def test_cooperative_cancellation_of_a_running_job(make_system: MakeSystem) -> None:
    """A running handler sees current_job().cancelled and the job ends CANCELLED."""
    system = make_system()
    entered = threading.Event()
    noticed = threading.Event()

    @system.task("long")
    def long() -> str:
        entered.set()
        wait_until(lambda: current_job().cancelled, timeout=10)
        noticed.set()
        return "stopped early"

    with system:
        handle = system.submit("long")
        assert entered.wait(5)
        assert handle.cancel()
        with pytest.raises(JobCancelled):
            handle.result(5)
        assert noticed.is_set()


def test_timeout_fails_the_attempt_and_replaces_the_hung_worker(make_system: MakeSystem) -> None:
    """A handler past its timeout fails that attempt; the retry runs on a fresh worker."""
    system = make_system(workers=1)
    hung = threading.Event()
    release = threading.Event()
    threads: list[str] = []

    @system.task("sticky", timeout=0.2, policy=RestartPolicy(max_restarts=1))
    def sticky() -> str:
        threads.append(threading.current_thread().name)
        if current_job().attempt == 1:
            hung.set()
            release.wait(10)  # hangs past the timeout
            return "late"
        return "fresh"

    with system:
        handle = system.submit("sticky")
        assert handle.result(timeout=10) == "fresh"
        info = system.job(handle.id)
        assert info.attempts == 2
        assert threads[0] != threads[1]  # a new worker incarnation ran the retry
        release.set()
        system.submit("sticky").result(5)  # the pool still works
        assert system.job(handle.id).result == "fresh"  # the late answer was fenced


def test_worker_dying_mid_job_counts_as_an_attempt(make_system: MakeSystem) -> None:
    """A handler that takes its worker down fails the attempt; the retry succeeds."""
    system = make_system(workers=1)

    @system.task("fatal", policy=RestartPolicy(max_restarts=1))
    def fatal() -> str:
        if current_job().attempt == 1:
            raise SystemExit("the worker goes down with this job")
        return "second life"

    with system:
        handle = system.submit("fatal")
        assert handle.result(timeout=10) == "second life"
        assert system.job(handle.id).attempts == 2


def test_dead_letters_retry_and_purge(make_system: MakeSystem) -> None:
    """Dead jobs can be inspected, retried under the same id, and purged."""
    system = make_system()
    should_fail = {"on": True}

    @system.task("sometimes", policy=RestartPolicy(max_restarts=0))
    def sometimes(x: int) -> int:
        if should_fail["on"]:
            raise RuntimeError(f"bad {x}")
        return x

    with system:
        a, b = system.submit("sometimes", 1), system.submit("sometimes", 2)
        for h in (a, b):
            with pytest.raises(JobFailed):
                h.result(5)
        wait_until(lambda: len(system.dead_letters()) == 2)
        assert {d.error for d in system.dead_letters()} == {
            "RuntimeError: bad 1",
            "RuntimeError: bad 2",
        }
        should_fail["on"] = False
        again = system.retry_dead(a.id)
        assert again.id == a.id
        assert again.result(5) == 1
        assert system.job(a.id).attempts == 1
        assert [d.id for d in system.dead_letters()] == [b.id]
        assert system.purge_dead() == 1
        assert system.dead_letters() == []
        with pytest.raises(JobNotFound):
            system.retry_dead(b.id)


def test_results_expire_after_retention(make_system: MakeSystem) -> None:
    """Finished jobs are forgotten after the retention period, freeing memory."""
    clock = VirtualClock()
    system = make_system(clock=clock, retention=100)
    system.task("echo")(lambda x: x)
    with system:
        handle = system.submit("echo", 1)
        assert handle.result(5) == 1
        clock.advance(99)
        assert system.job(handle.id).status is JobStatus.SUCCEEDED
        clock.advance(2)
        wait_until(lambda: _missing(system, handle.id))
        with pytest.raises(JobNotFound):
            handle.result(1)
        assert system.stats()["statuses"]["succeeded"] == 0


def _missing(system: ActorSystem, job_id: str) -> bool:
    try:
        system.job(job_id)
    except JobNotFound:
        return True
    return False


def test_graceful_stop_lets_running_jobs_finish(make_system: MakeSystem) -> None:
    """stop() refuses new work and waits for running jobs up to the grace period."""
    system = make_system()
    gate = Gate()
    system.task("block")(gate)
    system.task("echo")(lambda x: x)
    system.start()
    handle = system.submit("block")
    assert gate.entered.wait(5)
    stopper = threading.Thread(target=system.stop, kwargs={"timeout": 10})
    stopper.start()
    wait_until(lambda: not system.running)
    with pytest.raises(SystemNotRunning):
        system.submit("echo", 1)
    gate.open.set()
    stopper.join(15)
    assert not stopper.is_alive()
    assert handle.result(timeout=0) == "through"  # its outcome was kept through the stop
    # Every actor of this system is gone, including the thread that ran the job.
    assert all(a.closed for a in [system.dispatcher, system.scheduler, *system.workers])
    wait_until(lambda: not gate.thread.is_alive())


def test_stats_count_statuses_and_depths(make_system: MakeSystem) -> None:
    """stats() counts jobs per status and queue depth."""
    system = make_system(workers=1, prefetch=1)
    gate = Gate()
    system.task("block")(gate)
    system.task("echo")(lambda x: x)
    with system:
        system.submit("block")
        assert gate.entered.wait(5)
        for i in range(3):
            system.submit("echo", i)
        stats = system.stats()
        assert stats["statuses"]["running"] == 1
        assert stats["queues"] == {"default": 3}
        assert stats["active"] == 4
        gate.open.set()
        assert system.join(5)
        assert system.stats()["statuses"]["succeeded"] == 4


# -- bad input: a clear error, and nothing changes ---------------------------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.submit("nope"), UnknownTask),
        (lambda s: s.submit("echo", object()), NotSerializable),
        (lambda s: s.submit("echo", kwargs={"x": {1, 2}}), NotSerializable),
        (lambda s: s.submit("echo", "x" * 5000), PayloadTooLarge),
        (lambda s: s.submit("echo", 1, delay=-1), InvalidSubmission),
        (lambda s: s.submit("echo", 1, priority=101), InvalidSubmission),
        (lambda s: s.submit("echo", 1, priority=1.5), InvalidSubmission),
        (lambda s: s.submit("echo", 1, timeout=0), InvalidSubmission),
        (lambda s: s.submit("echo", 1, queue="elsewhere"), UnknownQueue),
        (lambda s: s.submit("echo", 1, idempotency_key=""), InvalidSubmission),
        (lambda s: s.submit_many("echo", [[1], [object()]]), NotSerializable),
    ],
)
def test_bad_submissions_are_refused_and_change_nothing(
    make_system: MakeSystem, call: Any, error: Any
) -> None:
    """Each kind of bad input raises its named error and leaves the state unchanged."""
    system = make_system(max_payload_bytes=4096)
    system.task("echo")(lambda x=None: x)
    with system:
        system.submit("echo", 0).result(5)
        before = system.stats()
        with pytest.raises(error):
            call(system)
        assert system.stats() == before


def test_not_serializable_names_the_argument(make_system: MakeSystem) -> None:
    """The error says which argument msgpack could not encode."""
    system = make_system()
    system.task("echo")(lambda *a, **k: None)
    with system, pytest.raises(NotSerializable, match="argument #1"):
        system.submit("echo", 1, object())


def test_backpressure_refuses_past_the_bound(make_system: MakeSystem) -> None:
    """Past max_pending unfinished jobs, submissions are refused until work drains."""
    system = make_system(max_pending=2, workers=1, prefetch=1)
    gate = Gate()
    system.task("block")(gate)
    with system:
        system.submit("block")
        system.submit("block")
        with pytest.raises(Backpressure):
            system.submit("block")
        assert system.stats()["active"] == 2
        gate.open.set()
        assert system.join(5)
        system.submit("block").result(5)


def test_declarations_are_checked_eagerly() -> None:
    """Bad task options fail at declaration, not at the first job."""
    system = ActorSystem(workers=1)
    with pytest.raises(UnknownQueue):
        system.task("x", queue="missing")(lambda: None)
    with pytest.raises(InvalidSubmission):
        system.task("y", priority=1000)(lambda: None)
    with pytest.raises(ValueError, match="delivery"):
        system.task("z", delivery="exactly_once")(lambda: None)  # type: ignore[call-overload]
    system.task("w")(lambda: None)
    with pytest.raises(ValueError, match="registered already"):
        system.task("w")(lambda: None)


def test_submit_before_start_is_refused() -> None:
    """A system that is not running refuses work with SystemNotRunning."""
    system = ActorSystem(workers=1)
    system.task("echo")(lambda: None)
    with pytest.raises(SystemNotRunning):
        system.submit("echo")


# -- user actors ---------------------------------------------------------------------


class Greeter(pykka.ThreadingActor):
    def __init__(self, greeting: str) -> None:
        super().__init__()
        self.greeting = greeting
        self.seen = 0

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("greeter crashed")
        self.seen += 1
        return f"{self.greeting}, {message} ({self.seen})"


def test_spawned_actor_is_supervised_and_keeps_its_address(make_system: MakeSystem) -> None:
    """system.spawn supervises a user's actor: restarted in place, then given up on."""
    system = make_system()
    with system:
        greeter = system.spawn(Greeter, "hi", name="greeter", policy=RestartPolicy(max_restarts=1))
        assert greeter.ask("ann") == "hi, ann (1)"
        greeter.tell("crash")
        assert greeter.ask("bo", timeout=5) == "hi, bo (1)"
        greeter.tell("crash")  # the second crash exceeds max_restarts=1
        wait_until(lambda: greeter.closed)
        with pytest.raises(pykka.ActorDeadError):
            greeter.tell("cy")
        assert system.submit_many("echo", []) == []  # the job system is unaffected


def test_a_retried_job_that_dies_again_is_dead_lettered_again(make_system: MakeSystem) -> None:
    """Retrying a dead job that fails at once puts it back in the dead letters, every time."""
    system = make_system()

    @system.task("boom", policy=RestartPolicy(max_restarts=0))
    def boom() -> None:
        raise RuntimeError("boom")

    with system:
        handle = system.submit("boom")
        for _ in range(20):
            wait_until(lambda: [d.id for d in system.dead_letters()] == [handle.id])
            system.retry_dead(handle.id)
        wait_until(lambda: [d.id for d in system.dead_letters()] == [handle.id])
        assert system.job(handle.id).status is JobStatus.DEAD


def test_pause_holds_queued_jobs_until_resume(make_system: MakeSystem) -> None:
    """While paused, submitted jobs stay queued; resume runs them."""
    system = make_system()
    runs: list[int] = []
    system.task("record")(runs.append)
    with system:
        system.pause()
        handles = [system.submit("record", i) for i in range(5)]
        assert system.stats()["queues"] == {"default": 5}
        assert {h.status() for h in handles} == {JobStatus.QUEUED}
        system.resume()
        assert system.join(5)
    assert sorted(runs) == [0, 1, 2, 3, 4]
