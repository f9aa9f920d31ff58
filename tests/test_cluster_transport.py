"""The node protocol over a real Redis: grants, recall, terms, node loss.

The leader's side talks to a stand-in Dispatcher that only records what it
is told, so each message of the protocol can be checked on its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from actorq.clock import SystemClock
from actorq.core import messages as m
from actorq.core.job import pack
from actorq.transport.redis_agent import NodeAgent
from actorq.transport.redis_client import Target
from actorq.transport.redis_hub import NodeHub

LEASE = 1.0


class Inbox:
    """Stands in for the Dispatcher's address: keeps what it is told, in order."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()

    def tell(self, message: Any) -> None:
        self.messages.put(message)

    def next(self, kind: type, timeout: float = 10.0) -> Any:
        while True:
            message = self.messages.get(timeout=timeout)
            if isinstance(message, kind):
                return message


@pytest.fixture
def parts(redis_url: str) -> Iterator[tuple[NodeAgent, NodeHub, Inbox, threading.Event, Any]]:
    target = Target.from_url(redis_url)
    client = redis.Redis.from_url(target.redis_url)
    release = threading.Event()
    ran: list[str] = []

    def work(key: str) -> str:
        ran.append(key)
        if key == "slow":
            release.wait(10)
        return key

    agent = NodeAgent(
        client,
        target.namespace,
        workers=1,
        lookup=lambda task: work if task == "work" else None,
        clock=SystemClock(),
        lease=LEASE,
    ).start()
    inbox = Inbox()
    hub = NodeHub(
        client,
        target.namespace,
        dispatcher=inbox,
        lease=LEASE,
        leading=lambda: True,
    ).start()
    yield agent, hub, inbox, release, (client, target, ran)
    release.set()
    hub.stop()
    agent.stop()
    client.close()


def job(key: str, attempt: int = 1) -> tuple[str, int, str, bytes]:
    return (key, attempt, "work", pack([[key], {}]))


def test_grants_run_on_the_node_and_unstarted_ones_can_be_recalled(parts: Any) -> None:
    """Reset, Ready, Assign, Recall and Finished make the round trip through Redis."""
    agent, hub, inbox, release, (_, _, ran) = parts
    hub.join_known()
    joined = inbox.next(m.NodeJoined)
    assert joined.node == agent.node
    (worker,) = joined.workers
    hub.tell(worker, m.Reset(7))
    ready = inbox.next(m.Ready)
    assert (ready.worker, ready.epoch) == (worker, 7)
    hub.tell(worker, m.Assign(7, [job("slow"), job("q1"), job("q2")]))
    hub.recall(worker, ["q1", "q2"])
    recalled = inbox.next(m.Recalled)
    assert (recalled.worker, sorted(recalled.ids)) == (worker, ["q1", "q2"])
    release.set()
    finished = inbox.next(m.Finished)
    assert [(r[0], r[1], r[2]) for r in finished.results] == [("slow", 1, True)]
    assert ran == ["slow"]


def test_a_node_obeys_only_the_newest_leader(parts: Any) -> None:
    """After a new term's reset, grants from the older term are dropped, not run."""
    _agent, hub, inbox, release, (client, target, ran) = parts
    release.set()
    hub.join_known()
    (worker,) = inbox.next(m.NodeJoined).workers
    successor = NodeHub(
        client,
        target.namespace,
        dispatcher=inbox,
        lease=LEASE,
        leading=lambda: True,
    ).start()
    try:
        assert successor.term == hub.term + 1
        successor.tell(worker, m.Reset(8))
        assert inbox.next(m.Ready).epoch == 8
        hub.tell(worker, m.Assign(8, [job("stale")]))
        successor.tell(worker, m.Assign(8, [job("fresh")]))
        finished = inbox.next(m.Finished)
        assert [r[0] for r in finished.results] == ["fresh"]
        assert "stale" not in ran
    finally:
        successor.stop()


def test_a_node_that_stops_heart_beating_is_declared_lost(parts: Any) -> None:
    """Once the node's lease key is gone, the leader tells the Dispatcher NodeLost."""
    agent, hub, inbox, _release, _ = parts
    hub.join_known()
    inbox.next(m.NodeJoined)
    agent.stop()
    assert inbox.next(m.NodeLost, timeout=10).node == agent.node
