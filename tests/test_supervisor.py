"""Supervision: OTP/Akka semantics for any pykka actor."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actorq import Backoff, ChildSpec, Escalated, RestartPolicy, Supervisor, VirtualClock
from actorq.supervision import RestartChild, WhichChildren
from tests.helpers import wait_until


class Journal:
    """Records lifecycle events of the test actors, in order, across threads."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


class Counter(pykka.ThreadingActor):
    def __init__(self, name: str, log: Journal) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.count = 0

    def on_start(self) -> None:
        self.log.add(f"start {self.name}")

    def on_stop(self) -> None:
        self.log.add(f"stop {self.name}")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if message == "fatal":
            raise KeyError("fatal")
        if message == "exit":
            self.stop()
            return None
        if message == "get":
            return self.count
        if isinstance(message, threading.Event):
            message.wait(10)
            return None
        self.count += 1
        return None


def specs(log: Journal, names: str = "abc", restart: str = "permanent") -> list[ChildSpec]:
    return [ChildSpec.of(Counter, n, log, name=n, restart=restart) for n in names]  # type: ignore[arg-type]


@pytest.fixture
def log() -> Journal:
    return Journal()


@pytest.fixture
def tree(log: Journal):  # type: ignore[no-untyped-def]
    started: list[pykka.ActorRef[Any]] = []
    given_up: list[Escalated] = []

    def start(children: list[ChildSpec], policy: RestartPolicy, **kw: Any) -> pykka.ActorRef[Any]:
        ref = Supervisor.start(children, policy, on_give_up=given_up.append, **kw)
        started.append(ref)
        return ref

    start.given_up = given_up  # type: ignore[attr-defined]
    yield start
    for ref in started:
        if ref.is_alive():
            ref.stop()


def test_crashed_child_restarts_at_the_same_address(log: Journal, tree: Any) -> None:
    """A crash replaces the child; the address stays valid and later messages arrive."""
    children = specs(log, "a")
    tree(children, RestartPolicy(max_restarts=3))
    a = children[0].address
    a.tell(1)
    a.tell(1)
    assert a.ask("get") == 2
    a.tell("crash")
    a.tell(1)  # sent while the child may be restarting: kept, not lost
    assert a.ask("get", timeout=5) == 1  # fresh state, the crashing message not redelivered
    assert log.lines.count("start a") == 2


def test_children_start_in_order_and_stop_in_reverse(log: Journal, tree: Any) -> None:
    """OTP order: start a, b, c; stop c, b, a."""
    ref = tree(specs(log), RestartPolicy())
    ref.stop()
    assert log.lines == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_intensity_exceeded_escalates_and_stops_cleanly(log: Journal, tree: Any) -> None:
    """Past max_restarts within the window the root gives up, stops children, reports."""
    children = specs(log, "ab")
    ref = tree(children, RestartPolicy(max_restarts=2, within=60))
    a = children[0].address
    for _ in range(3):
        wait_until(a.is_alive)
        a.tell("crash")
    wait_until(lambda: tree.given_up)
    assert isinstance(tree.given_up[0], Escalated)
    assert tree.given_up[0].child == "a"
    wait_until(lambda: not ref.is_alive())
    assert "stop b" in log.lines
    with pytest.raises(pykka.ActorDeadError):
        a.tell(1)
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("Counter")])


def test_nested_supervisor_escalates_to_its_parent(log: Journal, tree: Any) -> None:
    """A child supervisor that gives up fails; its parent restarts the whole subtree."""
    inner_children = specs(log, "x")
    inner = ChildSpec(
        "inner",
        lambda: Supervisor(inner_children, RestartPolicy(max_restarts=0), name="inner"),
    )
    tree([inner], RestartPolicy(max_restarts=5))
    x = inner_children[0].address
    x.tell(1)
    x.tell("crash")  # inner allows no restart: it escalates, root restarts inner
    wait_until(lambda: log.lines.count("start x") == 2)
    assert x.ask("get", timeout=5) == 0
    assert not tree.given_up


def test_one_for_all_restarts_every_sibling(log: Journal, tree: Any) -> None:
    """one_for_all: b crashing restarts a, b and c; the exit counts once."""
    children = specs(log)
    ref = tree(children, RestartPolicy(strategy="one_for_all", max_restarts=1))
    children[1].address.tell("crash")
    wait_until(lambda: log.lines.count("start c") == 2)
    assert all(log.lines.count(f"start {n}") == 2 for n in "abc")
    assert [c.address.ask("get", timeout=5) for c in children] == [0, 0, 0]
    restarts = {name: n for name, _, n in ref.ask(WhichChildren())}
    assert restarts["b"] == 1
    assert not tree.given_up  # one exit, one restart: within max_restarts=1


def test_rest_for_one_restarts_the_child_and_those_after_it(log: Journal, tree: Any) -> None:
    """rest_for_one: b crashing restarts b and c, not a."""
    children = specs(log)
    tree(children, RestartPolicy(strategy="rest_for_one"))
    children[0].address.tell(1)
    children[1].address.tell("crash")
    wait_until(lambda: log.lines.count("start c") == 2)
    assert log.lines.count("start b") == 2
    assert log.lines.count("start a") == 1
    assert children[0].address.ask("get") == 1


def test_restart_types(log: Journal, tree: Any) -> None:
    """permanent restarts after a normal exit; transient only after a crash; temporary never.

    As in OTP, a transient child that exited normally keeps its place (not
    running); a temporary one is dropped.
    """
    perm = ChildSpec.of(Counter, "p", log, name="p", restart="permanent")
    trans = ChildSpec.of(Counter, "t", log, name="t", restart="transient")
    temp = ChildSpec.of(Counter, "x", log, name="x", restart="temporary")
    ref = tree([perm, trans, temp], RestartPolicy(max_restarts=10))
    perm.address.tell("exit")
    wait_until(lambda: log.lines.count("start p") == 2)
    trans.address.tell("crash")
    wait_until(lambda: log.lines.count("start t") == 2)
    trans.address.tell("exit")
    temp.address.tell("crash")
    wait_until(
        lambda: [(n, up) for n, up, _ in ref.ask(WhichChildren())] == [("p", True), ("t", False)]
    )
    assert log.lines.count("start t") == 2
    assert log.lines.count("start x") == 1


def test_decider_gives_up_at_once_on_give_up_on(log: Journal, tree: Any) -> None:
    """An exception listed in give_up_on escalates without any restart."""
    children = specs(log, "a")
    tree(children, RestartPolicy(max_restarts=10, give_up_on=(KeyError,)))
    children[0].address.tell("fatal")
    wait_until(lambda: tree.given_up)
    assert log.lines.count("start a") == 1


def test_backoff_delays_the_restart_by_the_clock(log: Journal, tree: Any) -> None:
    """With a virtual clock, the restart waits exactly until the backoff has passed."""
    clock = VirtualClock()
    children = specs(log, "a")
    tree(children, RestartPolicy(max_restarts=5, backoff=Backoff.constant(30)), clock=clock)
    a = children[0].address
    a.tell("crash")
    wait_until(lambda: clock.next_deadline() is not None)
    clock.advance(29.9)
    a.tell(1)
    assert log.lines.count("start a") == 1
    clock.advance(0.2)
    assert a.ask("get", timeout=5) == 1  # the message sent during the backoff was kept
    assert log.lines.count("start a") == 2


def test_hung_child_is_replaced_on_request(log: Journal, tree: Any) -> None:
    """RestartChild replaces a child stuck in a handler; its address serves the new one."""
    children = specs(log, "a")
    ref = tree(children, RestartPolicy())
    a = children[0].address
    stuck = threading.Event()
    a.tell(stuck)  # the handler blocks on the event
    ref.tell(RestartChild("a"))
    wait_until(lambda: log.lines.count("start a") == 2)
    a.tell(1)
    assert a.ask("get", timeout=5) == 1
    stuck.set()
