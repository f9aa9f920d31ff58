"""The job system on durable journals: restarts, outages, and the codec."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorq import ActorSystem, JobStatus, JournalFenced, JournalUnavailable, RestartPolicy
from actorq.actors.deadletter import Buried, Removed, Reviving
from actorq.core import events as ev
from actorq.core.job import JobInfo, JobSpec, pack
from actorq.core.schedules import ScheduleSpec
from actorq.persistence import codec
from tests.helpers import wait_until
from tests.redis_server import RedisServer


def build(journal: str, runs: list[str] | None = None) -> ActorSystem:
    system = ActorSystem(workers=2, journal=journal)
    record = runs.append if runs is not None else (lambda _: None)

    @system.task("echo")
    def echo(x: Any) -> Any:
        record(x)
        return x

    @system.task("doomed", policy=RestartPolicy(max_restarts=0))
    def doomed(x: Any) -> None:
        raise ValueError(f"doomed {x}")

    return system


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_state_survives_a_clean_restart(kind: str, tmp_path: Path, redis_url: str) -> None:
    """Results, dead letters, delayed jobs and idempotency keys come back after a restart."""
    journal = str(tmp_path / "journal") if kind == "file" else redis_url
    system = build(journal)
    with system:
        done = system.submit("echo", {"a": [1, 2]}, idempotency_key="k1")
        assert done.result(5) == {"a": [1, 2]}
        dead = system.submit("doomed", 1)
        wait_until(lambda: len(system.dead_letters()) == 1)
        later = system.submit("echo", "later", delay=3600)
    system = build(journal)
    with system:
        assert system.job(done.id).result == {"a": [1, 2]}
        assert system.submit("echo", {"a": [1, 2]}, idempotency_key="k1").id == done.id
        assert [d.id for d in system.dead_letters()] == [dead.id]
        assert system.job(dead.id).status is JobStatus.DEAD
        assert system.job(later.id).status is JobStatus.SCHEDULED
        assert system.cancel(later.id)


def test_a_second_system_on_the_same_redis_namespace_is_refused(redis_url: str) -> None:
    """Two dispatchers on one namespace would corrupt it: the second is refused."""
    first = build(redis_url)
    with first:
        second = build(redis_url)
        with pytest.raises(JournalFenced):
            second.start()
        assert first.submit("echo", 1).result(5) == 1


def test_redis_killed_and_restarted_under_load() -> None:
    """While Redis is away submissions fail clearly; afterwards nothing acknowledged is lost."""
    server = RedisServer()  # its own server: this test kills it
    try:
        runs: list[str] = []
        system = build(f"{server.url}?namespace=outage&retry_for=0.5", runs)
        with system:
            acked = [system.submit("echo", f"before-{i}") for i in range(50)]
            server.kill()
            refused = 0
            producing = True

            def produce() -> None:
                nonlocal refused
                i = 0
                while producing:
                    try:
                        acked.append(system.submit("echo", f"during-{i}"))
                    except JournalUnavailable:
                        refused += 1
                    i += 1

            producer = threading.Thread(target=produce)
            producer.start()
            wait_until(lambda: refused >= 3, timeout=30)
            server.restart()
            wait_until(lambda: _accepting(system), timeout=30)
            producing = False
            producer.join(10)
            acked += [system.submit("echo", f"after-{i}") for i in range(50)]
            assert system.join(30)
            for handle in acked:
                assert handle.status() is JobStatus.SUCCEEDED
            assert len({h.id for h in acked}) == len(acked)
            expected = {system.job(h.id).args[0] for h in acked}
            assert expected <= set(runs)
    finally:
        server.stop()


def _accepting(system: ActorSystem) -> bool:
    try:
        system.submit("echo", "probe").result(5)
    except JournalUnavailable:
        return False
    return True


# -- the codec ----------------------------------------------------------------------

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
ids = st.text(min_size=1, max_size=12)
times = st.floats(0, 2e9, allow_nan=False)
maybe_time = st.none() | times

payloads = st.tuples(
    st.lists(plain, max_size=3), st.dictionaries(st.text(max_size=5), plain, max_size=3)
).map(lambda args: pack(list(args)))
specs = st.builds(
    JobSpec,
    id=ids,
    task=ids,
    payload=payloads,
    queue=ids,
    priority=st.integers(-100, 100),
    timeout=maybe_time,
    policy=st.none(),
    delivery=st.sampled_from(["at_least_once", "at_most_once"]),
    idempotency_key=st.none() | ids,
)
infos = st.builds(
    JobInfo,
    spec=specs,
    status=st.sampled_from(list(JobStatus)),
    attempts=st.integers(0, 9),
    result=plain,
    error=st.none() | st.text(max_size=10),
    created_at=times,
    run_at=maybe_time,
    started_at=maybe_time,
    finished_at=maybe_time,
)

schedule_specs = st.builds(
    ScheduleSpec,
    name=ids,
    cron=st.sampled_from(["0 * * * *", "30 2 * * *", "*/15 9-17 * * 1-5"]),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/Los_Angeles"]),
    task=ids,
    payload=payloads,
    queue=ids,
    priority=st.integers(-100, 100),
    timeout=maybe_time,
    policy=st.none(),
    delivery=st.sampled_from(["at_least_once", "at_most_once"]),
    catch_up=st.sampled_from(["skip", "one", "all"]),
    window=st.floats(1, 1e7),
    overlap=st.sampled_from(["allow", "skip", "buffer_one"]),
    fall_back=st.sampled_from(["once", "twice"]),
)

EVENTS = st.one_of(
    st.builds(ev.Submitted, specs, times, maybe_time),
    st.builds(ev.BecameDue, st.lists(ids, max_size=3), times),
    st.builds(ev.Started, ids, st.lists(ids, max_size=3), times),
    st.builds(ev.Succeeded, ids, st.integers(1, 50), plain.map(pack), times),
    st.builds(
        ev.Failed, ids, st.integers(1, 50), st.text(max_size=30), times, maybe_time, maybe_time
    ),
    st.builds(ev.Requeued, st.lists(ids, max_size=3), st.booleans(), times),
    st.builds(ev.CancelRequested, ids, times),
    st.builds(ev.Cancelled, ids, times),
    st.builds(ev.HandedOff, ids),
    st.builds(ev.Expired, st.lists(ids, max_size=3)),
    st.builds(Buried, infos),
    st.builds(Removed, st.lists(ids, max_size=3)),
    st.builds(ev.ScheduleSet, schedule_specs, times),
    st.builds(ev.SchedulePaused, ids, st.booleans(), times),
    st.builds(ev.ScheduleDeleted, ids, times),
    st.builds(ev.ScheduleFired, ids, times, ids, st.booleans(), times),
    st.builds(
        ev.ScheduleSkipped,
        ids,
        st.integers(1, 10**6),
        times,
        st.sampled_from(["missed", "overlap"]),
        times,
    ),
    st.builds(ev.ScheduleBuffered, ids, times, times),
    st.builds(Reviving, ids),
)


@given(st.lists(EVENTS, min_size=1, max_size=5))
def test_every_event_type_round_trips_through_the_codec(events: list[Any]) -> None:
    """encode_batch then decode_batch gives back equal events, for every event type."""
    assert codec.decode_batch(codec.encode_batch(events)) == events


def test_the_event_strategy_covers_every_registered_type() -> None:
    """No event type escapes the round-trip property."""
    covered = {
        "job.submitted",
        "job.due",
        "job.started",
        "job.succeeded",
        "job.failed",
        "job.requeued",
        "job.cancel_requested",
        "job.cancelled",
        "job.handed_off",
        "job.expired",
        "dead.buried",
        "dead.removed",
        "schedule.set",
        "schedule.paused",
        "schedule.deleted",
        "schedule.fired",
        "schedule.skipped",
        "schedule.buffered",
        "dead.reviving",
    }
    registered = {t for t in codec.registered_event_types() if not t.startswith("test.")}
    assert registered == covered
