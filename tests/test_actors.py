"""Each job actor on its own, driven by messages, with a probe for its peers."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actorq.actors.board import ResultBoard
from actorq.actors.deadletter import DeadLetter
from actorq.actors.scheduler import Scheduler
from actorq.actors.worker import Worker
from actorq.clock import VirtualClock
from actorq.core import messages as m
from actorq.core.job import JobInfo, JobSpec, JobStatus, pack, unpack
from actorq.persistence.journal import MemoryJournal
from actorq.supervision.address import Address


class Probe(pykka.ThreadingActor):
    """Stands in for a peer actor: records what it is told."""

    def __init__(self, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self.inbox = inbox

    def on_receive(self, message: Any) -> None:
        self.inbox.put(message)


@pytest.fixture
def probe() -> Iterator[tuple[Address, queue.Queue[Any]]]:
    inbox: queue.Queue[Any] = queue.Queue()
    actor = Probe(inbox)
    address = Address("probe")
    address.attach(actor)
    actor._start_actor_loop()
    yield address, inbox
    actor.actor_ref.stop()


def next_of(inbox: queue.Queue[Any], kind: type) -> Any:
    while True:
        message = inbox.get(timeout=5)
        if isinstance(message, kind):
            return message


def test_scheduler_fires_due_timers_in_order_in_one_batch(probe: Any) -> None:
    """Timers fire when the clock reaches them, earliest first, batched per wake-up."""
    dispatcher, inbox = probe
    clock = VirtualClock(start=100.0)
    scheduler = Scheduler.start(clock, dispatcher)
    try:
        scheduler.tell(m.Schedule([(130.0, "due", "b", 130.0), (110.0, "due", "a", 110.0)]))
        scheduler.tell(m.Schedule([(200.0, "timeout", "c", 1)]))
        scheduler.ask(m.Schedule([]))  # the timers are in before the clock moves
        clock.advance(40)
        fired = next_of(inbox, m.TimersFired)
        assert [t[2] for t in fired.timers] == ["a", "b"]
        clock.advance(100)
        assert [t[2] for t in next_of(inbox, m.TimersFired).timers] == ["c"]
    finally:
        scheduler.stop()


def test_worker_runs_assigned_jobs_in_order_and_reports_outcomes(probe: Any) -> None:
    """A worker joins, announces credits after a Reset, runs jobs, reports each outcome."""
    dispatcher, inbox = probe
    tasks = {"double": lambda x: x * 2, "boom": lambda: 1 / 0}
    worker = Worker.start(
        "w", dispatcher=dispatcher, lookup=tasks.get, board=ResultBoard(), clock=VirtualClock()
    )
    try:
        joined = next_of(inbox, m.WorkerJoined)
        worker.tell(m.Reset(epoch=7))
        ready = next_of(inbox, m.Ready)
        assert (ready.worker, ready.incarnation, ready.epoch, ready.credits) == (
            "w",
            joined.incarnation,
            7,
            1,  # one slot: a worker runs one job at a time
        )
        worker.tell(
            m.Assign(
                7,
                [
                    ("j1", 1, "double", pack([[21], {}])),
                    ("j2", 1, "boom", pack([[], {}])),
                    ("j3", 2, "missing", pack([[], {}])),
                ],
            )
        )
        results: list[m.Result] = []
        while len(results) < 3:
            results += next_of(inbox, m.Finished).results
        assert [(r[0], r[1], r[2]) for r in results] == [
            ("j1", 1, True),
            ("j2", 1, False),
            ("j3", 2, False),
        ]
        assert unpack(results[0][3] or b"") == 42
        assert "ZeroDivisionError" in (results[1][4] or "")
        assert "ZeroDivisionError" in results[1][5]
        assert "missing" in (results[2][4] or "")
        worker.tell(m.Assign(6, [("stale", 1, "double", pack([[1], {}]))]))  # an older epoch
        worker.tell(m.Assign(7, [("j4", 1, "double", pack([[1], {}]))]))
        assert next_of(inbox, m.Finished).results[0][0] == "j4"
    finally:
        worker.stop()


def test_dead_letter_burial_is_idempotent_and_confirmed(probe: Any) -> None:
    """Burying the same job twice keeps one entry; each burial is confirmed."""
    dispatcher, inbox = probe
    journal = MemoryJournal()
    dead = DeadLetter.start(journal, dispatcher=dispatcher)
    job = JobInfo(JobSpec(id="j1", task="t", payload=pack([[], {}])), JobStatus.DEAD, error="boom")
    try:
        dead.tell(m.Bury(job))
        dead.tell(m.Bury(job))
        assert next_of(inbox, m.DeadLettered).job_id == "j1"
        assert next_of(inbox, m.DeadLettered).job_id == "j1"
        listed: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        dead.tell(m.ListDead(listed))
        assert listed.get(timeout=5) == [job]
    finally:
        dead.stop()
    assert journal.last_seq("deadletter") == 1  # one event for two burials
    again = DeadLetter.start(journal, dispatcher=dispatcher)
    try:
        listed = pykka.ThreadingFuture()
        again.tell(m.ListDead(listed))
        assert listed.get(timeout=5) == [job]  # recovered from the journal
    finally:
        again.stop()
