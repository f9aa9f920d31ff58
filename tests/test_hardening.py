"""Faults found by attacking the job system, each pinned by a test that failed before its fix."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from actorq import (
    ActorSystem,
    IdempotencyConflict,
    InvalidSubmission,
    JobFailed,
    JobNotFound,
    JobStatus,
    JournalCorrupted,
    NotSerializable,
    RestartPolicy,
    SystemNotRunning,
)
from actorq.actors.deadletter import Buried, Reviving
from actorq.paging import DEFAULT_LIMIT, MAX_LIMIT
from actorq.persistence.file import FileJournal
from actorq.persistence.journal import Snapshot
from actorq.submission import MAX_DELAY, MAX_DEPTH, MAX_KEY_LENGTH, MAX_TIMEOUT
from actorq.system import JOB_POLICY
from tests.helpers import MakeSystem, wait_until
from tests.redis_server import RedisServer


def test_job_timeouts_never_stop_the_system(make_system: MakeSystem) -> None:
    """Each timeout replaces a hung worker; 30 of them are no crash loop of the tree."""
    release = threading.Event()
    system = make_system()

    @system.task(timeout=0.001, policy=RestartPolicy(max_restarts=0))
    def hang() -> None:
        release.wait(30)

    @system.task
    def add(a: int, b: int) -> int:
        return a + b

    try:
        with system:
            hung = [hang.submit() for _ in range(30)]
            for handle in hung:
                with pytest.raises(JobFailed, match="timed out"):
                    handle.result(timeout=30)
            assert system.running
            assert system.failure is None
            assert [add.submit(i, 1).result(timeout=10) for i in range(5)] == [1, 2, 3, 4, 5]
            assert system.job(hung[0].id).status is JobStatus.DEAD
    finally:
        release.set()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("delay", float("inf")),
        ("delay", float("nan")),
        ("delay", 1e10),
        ("delay", -1),
        ("timeout", float("inf")),
        ("timeout", float("nan")),
        ("timeout", 1e10),
        ("timeout", 0),
    ],
)
def test_unbounded_or_non_finite_delays_and_timeouts_are_refused(
    make_system: MakeSystem, option: str, value: float
) -> None:
    system = make_system()

    @system.task
    def noop() -> None:
        return None

    with system:
        options: dict[str, Any] = {option: value}
        with pytest.raises(InvalidSubmission, match=option):
            system.submit(noop.name, **options)
        assert system.stats()["active"] == 0
        # the clock still fires: a delayed job becomes due and runs
        assert system.submit(noop.name, delay=0.01).result(timeout=10) is None


def test_the_bounds_themselves_are_accepted(make_system: MakeSystem) -> None:
    system = make_system()

    @system.task
    def noop() -> None:
        return None

    with system:
        handle = system.submit(noop.name, delay=MAX_DELAY, timeout=MAX_TIMEOUT)
        assert system.job(handle.id).status is JobStatus.SCHEDULED
        assert system.cancel(handle.id)


def test_an_unencodable_idempotency_key_is_refused_in_the_caller(make_system: MakeSystem) -> None:
    """A lone surrogate used to crash the Dispatcher's commit; 11 of them stopped the system."""
    system = make_system()

    @system.task
    def noop() -> None:
        return None

    with system:
        for _ in range(15):
            with pytest.raises(InvalidSubmission, match="idempotency_key"):
                system.submit(noop.name, idempotency_key="order-\udc80")
        assert system.running
        assert system.stats()["active"] == 0
        assert system.submit(noop.name, idempotency_key="order-1").result(timeout=10) is None


def test_a_call_that_cannot_bind_is_refused_at_submit(make_system: MakeSystem) -> None:
    system = make_system()

    @system.task
    def add(a: int, b: int) -> int:
        return a + b

    with system:
        with pytest.raises(InvalidSubmission, match="missing a required argument"):
            system.submit(add.name, 1)
        with pytest.raises(InvalidSubmission, match="unexpected keyword"):
            system.submit(add.name, 1, 2, kwargs={"c": 3})
        assert system.stats()["active"] == 0
        assert system.submit(add.name, 1, kwargs={"b": 2}).result(timeout=10) == 3


def test_reusing_an_idempotency_key_for_another_call_is_a_conflict(
    make_system: MakeSystem,
) -> None:
    system = make_system()

    @system.task
    def add(a: int, b: int) -> int:
        return a + b

    @system.task
    def sub(a: int, b: int) -> int:
        return a - b

    with system:
        first = system.submit(add.name, 1, 2, idempotency_key="k")
        again = system.submit(add.name, 1, 2, idempotency_key="k")
        assert again.id == first.id and again.existing
        with pytest.raises(IdempotencyConflict) as caught:
            system.submit(add.name, 1, 3, idempotency_key="k")
        assert caught.value.job_id == first.id
        with pytest.raises(IdempotencyConflict):
            system.submit(sub.name, 1, 2, idempotency_key="k")
        assert first.result(timeout=10) == 3
        assert system.stats()["statuses"]["succeeded"] == 1


def test_tuple_and_int_keyed_maps_round_trip(make_system: MakeSystem) -> None:
    system = make_system()

    @system.task
    def echo(value: Any) -> Any:
        return value

    @system.task
    def keyed() -> dict[Any, int]:
        return {(1, 2): 3, 4: 5}

    with system:
        assert echo.submit({(1, (2, 3)): "t", 7: "i"}).result(timeout=10) == {
            (1, (2, 3)): "t",
            7: "i",
        }
        assert keyed.submit().result(timeout=10) == {(1, 2): 3, 4: 5}


def test_arguments_nested_too_deep_are_refused(make_system: MakeSystem) -> None:
    system = make_system()

    @system.task
    def echo(value: Any) -> Any:
        return value

    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with system:
        with pytest.raises(NotSerializable, match="nested"):
            echo.submit(deep)
        assert system.stats()["active"] == 0
        fits: Any = "leaf"
        for _ in range(MAX_DEPTH - 1):
            fits = [fits]
        assert echo.submit(fits).result(timeout=10) == fits


def test_result_without_timeout_raises_once_the_system_stops(make_system: MakeSystem) -> None:
    release = threading.Event()
    system = make_system()

    @system.task
    def slow() -> None:
        release.wait(30)

    system.start()
    handle = slow.submit()
    caught: list[BaseException] = []

    def wait() -> None:
        try:
            handle.result()
        except BaseException as exc:
            caught.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    system.stop(timeout=0.05)
    waiter.join(10)
    release.set()
    assert not waiter.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], SystemNotRunning)


def test_a_restarted_system_takes_submissions_at_once_and_join_sees_scheduled_jobs(
    make_system: MakeSystem, tmp_path: Path
) -> None:
    system = make_system(journal=str(tmp_path / "journal"))

    @system.task
    def noop() -> None:
        return None

    for _ in range(3):
        system.start()
        assert noop.submit().result(timeout=10) is None
        system.stop(timeout=5)
    system.start()
    scheduled = system.submit(noop.name, delay=3600)
    system.stop(timeout=5)
    system.start()
    assert system.job(scheduled.id).status is JobStatus.SCHEDULED
    assert not system.join(timeout=0.05)
    assert system.cancel(scheduled.id)
    assert system.join(timeout=10)


def _journal_with_jobs(root: Path, count: int = 5) -> None:
    system = ActorSystem(workers=1, journal=str(root))
    system.task("noop")(lambda: None)
    with system:
        for _ in range(count):
            system.submit("noop").result(timeout=10)


def test_start_raises_on_a_corrupt_journal_once_without_a_restart_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "journal"
    _journal_with_jobs(root)
    (segment,) = (root / "dispatcher").glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF  # inside the first record: damage no crash can cause
    segment.write_bytes(bytes(data))
    system = ActorSystem(workers=1, journal=str(root))
    system.task("noop")(lambda: None)
    with pytest.raises(JournalCorrupted) as caught:
        system.start()
    assert str(segment) in str(caught.value)
    assert not system.running
    assert not any("restarting dispatcher" in r.getMessage() for r in caplog.records)
    with pytest.raises(SystemNotRunning):
        system.submit("noop")


def test_a_snapshot_body_of_the_wrong_shape_is_named_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "journal"
    _journal_with_jobs(root)
    journal = FileJournal(root)
    seq = journal.last_seq("dispatcher")
    journal.save_snapshot("dispatcher", Snapshot(seq, {"not": "a dispatcher state"}))
    journal.close()
    system = ActorSystem(workers=1, journal=str(root))
    with pytest.raises(JournalCorrupted, match="snapshot of dispatcher"):
        system.start()
    assert not system.running
    assert not any("restarting dispatcher" in r.getMessage() for r in caplog.records)


def test_leaving_the_block_runs_what_was_queued_on_the_memory_journal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []
    system = ActorSystem(workers=2, journal="memory")
    system.task("record")(ran.append)
    with caplog.at_level(logging.INFO, logger="actorq.system"), system:
        for i in range(500):
            system.submit("record", i, durability="accepted")
        system.submit("record", -1, delay=3600)
    assert sorted(ran) == list(range(500))
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    assert "1 unfinished jobs (1 scheduled)" in dropped[0].getMessage()


def test_stop_on_a_durable_journal_keeps_queued_jobs_and_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    ran: list[int] = []
    root = str(tmp_path / "journal")

    def make() -> ActorSystem:
        system = ActorSystem(workers=1, journal=root)
        system.task("block")(lambda: release.wait(30))
        system.task("record")(ran.append)
        return system

    system = make()
    system.start()
    blocker = system.submit("block")
    wait_until(lambda: system.job(blocker.id).status is JobStatus.RUNNING)
    queued = [system.submit("record", i) for i in range(3)]
    with caplog.at_level(logging.INFO, logger="actorq.system"):
        system.stop(timeout=0.05)
    release.set()
    kept = [r for r in caplog.records if "stay in the journal" in r.getMessage()]
    assert len(kept) == 1
    assert "3 queued" in kept[0].getMessage() and "1 running" in kept[0].getMessage()
    assert ran == []
    again = make()
    with again:
        assert [again.result(h.id, timeout=10) for h in queued] == [None] * 3
    assert sorted(ran) == [0, 1, 2]


def _flaky_system(root: str, runs: list[int], fail: threading.Event) -> ActorSystem:
    system = ActorSystem(workers=1, journal=root)

    @system.task("flaky", policy=RestartPolicy(max_restarts=0))
    def flaky(n: int) -> int:
        runs.append(n)
        if fail.is_set():
            raise ValueError("down")
        return n

    return system


def test_a_revival_decided_before_a_crash_is_carried_out_at_the_next_start(
    tmp_path: Path,
) -> None:
    root = str(tmp_path / "journal")
    runs: list[int] = []
    fail = threading.Event()
    fail.set()
    with _flaky_system(root, runs, fail) as system:
        dead = system.submit("flaky", 7)
        with pytest.raises(JobFailed):
            dead.result(timeout=10)
        wait_until(lambda: len(system.dead_letters()) == 1)
    # The process died right after the dead letters decided to revive the job.
    journal = FileJournal(root)
    journal.append("deadletter", [Reviving(dead.id)], after_seq=journal.last_seq("deadletter"))
    journal.close()
    fail.clear()
    with _flaky_system(root, runs, fail) as system:
        assert system.result(dead.id, timeout=10) == 7
        wait_until(lambda: not system.dead_letters())
    assert runs == [7, 7]


def test_a_stale_revival_never_runs_a_job_that_ran_since(tmp_path: Path) -> None:
    root = str(tmp_path / "journal")
    runs: list[int] = []
    fail = threading.Event()
    fail.set()
    with _flaky_system(root, runs, fail) as system:
        dead = system.submit("flaky", 7)
        with pytest.raises(JobFailed):
            dead.result(timeout=10)
        (letter,) = wait_until(system.dead_letters)
        fail.clear()
        assert system.retry_dead(dead.id).result(timeout=10) == 7
        wait_until(lambda: not system.dead_letters())
    # As if a crash had kept the letter and the decision after the job came back.
    journal = FileJournal(root)
    seq = journal.last_seq("deadletter")
    journal.append("deadletter", [Buried(letter), Reviving(dead.id)], after_seq=seq)
    journal.close()
    with _flaky_system(root, runs, fail) as system:
        wait_until(lambda: not system.dead_letters())
        assert system.job(dead.id).status is JobStatus.SUCCEEDED
        with pytest.raises(JobNotFound):
            system.retry_dead(dead.id)
    assert runs == [7, 7]


def test_at_most_once_jobs_that_finished_before_an_outage_are_not_called_lost() -> None:
    """A Redis outage restarts the Dispatcher; outcomes it had not journaled yet are kept."""
    server = RedisServer()
    gate = threading.Event()
    runs: list[int] = []
    try:
        system = ActorSystem(workers=4, journal=f"{server.url}?namespace=amo&retry_for=0.3")

        @system.task("once", delivery="at_most_once")
        def once(n: int) -> int:
            gate.wait(30)
            runs.append(n)
            return n

        with system:
            handles = [system.submit("once", n) for n in range(4)]
            wait_until(lambda: system.stats()["statuses"]["running"] == 4)
            server.kill()
            gate.set()
            wait_until(lambda: len(runs) == 4)
            wait_until(lambda: system.board.unavailable is not None)
            server.start()
            wait_until(lambda: system.board.unavailable is None, timeout=30)
            assert [system.result(h.id, timeout=30) for h in handles] == [0, 1, 2, 3]
            assert system.dead_letters() == []
        assert sorted(runs) == [0, 1, 2, 3]
    finally:
        gate.set()
        server.stop()


def test_the_defaults_the_readme_states() -> None:
    policy = ActorSystem().default_policy
    assert policy is JOB_POLICY
    assert policy.max_restarts == 3 and policy.within is None
    backoff = policy.backoff
    assert (backoff.kind, backoff.base, backoff.factor, backoff.cap, backoff.jitter) == (
        "exponential",
        0.2,
        2.0,
        30.0,
        "full",
    )
    assert (MAX_DELAY, MAX_TIMEOUT, MAX_DEPTH) == (366 * 86400, 7 * 86400, 64)
    assert (DEFAULT_LIMIT, MAX_LIMIT, MAX_KEY_LENGTH) == (100, 1000, 512)


def test_threads_left_in_hung_jobs_are_bounded(
    make_system: MakeSystem, caplog: pytest.LogCaptureFixture
) -> None:
    """A thread cannot be killed; past the bound, a hung worker waits to be replaced."""
    release = threading.Event()
    system = make_system(workers=2, max_hung_threads=3)

    @system.task(timeout=0.2, policy=RestartPolicy(max_restarts=0))
    def hang(n: int) -> int:
        release.wait(30)
        return n

    def worker_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name.startswith("Worker-"))

    try:
        with system:
            before = worker_threads()  # earlier tests' hung workers may still be ending
            handles = [hang.submit(n) for n in range(12)]
            # 3 replaced workers' threads, then the 2 current workers hung too.
            wait_until(lambda: system.stats()["statuses"]["dead"] == 5, timeout=30)
            wait_until(
                lambda: any("bound is 3" in r.getMessage() for r in caplog.records), timeout=30
            )
            assert worker_threads() <= before + 3
            assert system.stats()["statuses"]["dead"] == 5
            release.set()
            outcomes: list[int | None] = []
            for handle in handles:
                try:
                    outcomes.append(handle.result(timeout=30))
                except JobFailed:
                    outcomes.append(None)
            assert outcomes.count(None) == 5
            assert all(o in (None, n) for n, o in enumerate(outcomes))
            assert system.running
            wait_until(lambda: worker_threads() <= before, timeout=30)
    finally:
        release.set()


def test_the_hung_thread_bound_defaults_to_64() -> None:
    assert ActorSystem().max_hung_threads == 64
