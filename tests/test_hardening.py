"""Faults found by attacking the job system, each pinned by a test that failed before its fix."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from actorq import (
    ActorSystem,
    IdempotencyConflict,
    InvalidSubmission,
    JobFailed,
    JobStatus,
    NotSerializable,
)
from actorq.submission import MAX_DELAY, MAX_DEPTH, MAX_TIMEOUT

MakeSystem = Callable[..., ActorSystem]


@pytest.fixture
def make_system() -> Iterator[MakeSystem]:
    systems: list[ActorSystem] = []

    def make(**options: Any) -> ActorSystem:
        system = ActorSystem(**{"workers": 2, "journal": "memory", **options})
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop(timeout=5)


def test_job_timeouts_never_stop_the_system(make_system: MakeSystem) -> None:
    """Each timeout replaces a hung worker; 30 of them are no crash loop of the tree."""
    release = threading.Event()
    system = make_system()

    @system.task(timeout=0.001, policy=None)
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
        with pytest.raises(InvalidSubmission, match=option):
            options: dict[str, Any] = {option: value}
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
