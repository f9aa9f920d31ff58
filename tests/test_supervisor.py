"""Supervision: OTP/Akka semantics for any pykka actor."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actorq import Backoff, ChildSpec, Escalated, RestartPolicy, Supervisor, VirtualClock
from actorq.supervision import Address, RestartChild, Undeliverable, WhichChildren
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
        if isinstance(message, tuple):  # ("hang", entered, release)
            message[1].set()
            message[2].wait(10)
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
    entered, stuck = threading.Event(), threading.Event()
    a.tell(("hang", entered, stuck))
    assert entered.wait(5)  # the handler is blocked
    ref.tell(RestartChild("a"))
    wait_until(lambda: log.lines.count("start a") == 2)
    a.tell(1)
    assert a.ask("get", timeout=5) == 1
    stuck.set()


class Recorder(pykka.ThreadingActor):
    """Keeps every number it is told, in order; its on_stop can be made to hang."""

    def __init__(self, hang_on_stop: threading.Event | None = None) -> None:
        super().__init__()
        self.seen: list[int] = []
        self.hang_on_stop = hang_on_stop
        self.stopped = False

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        if message == "get":
            return list(self.seen)
        if isinstance(message, threading.Event):
            message.wait(10)
            return None
        self.seen.append(message)
        return None

    def on_stop(self) -> None:
        if self.hang_on_stop is not None:
            self.hang_on_stop.wait(10)
        self.stopped = True


def test_messages_sent_while_a_child_restarts_arrive_in_order(tree: Any) -> None:
    """Only the crashing message is lost; everything sent after it reaches the new incarnation."""
    spec = ChildSpec("r", Recorder)
    tree([spec], RestartPolicy(max_restarts=3))
    spec.address.tell(-1)
    spec.address.tell("crash")
    for i in range(200):
        spec.address.tell(i)
    assert spec.address.ask("get", timeout=5) == list(range(200))


def test_the_stash_is_bounded_and_overflow_goes_to_dead_letters(tree: Any) -> None:
    """Past stash_limit a message goes to on_dead_letter and an ask fails with Undeliverable."""
    dead: list[Any] = []
    address = Address("r", stash_limit=3, on_dead_letter=lambda a, m: dead.append(m))
    spec = ChildSpec("r", Recorder, address=address)
    clock = VirtualClock()
    tree([spec], RestartPolicy(max_restarts=3, backoff=Backoff.constant(10)), clock=clock)
    address.tell("crash")
    wait_until(lambda: clock.next_deadline() is not None)  # waiting out the backoff
    for i in range(5):
        address.tell(i)
    with pytest.raises(Undeliverable):
        address.ask("get", timeout=5)
    assert dead == [3, 4, "get"]
    clock.advance(10)
    wait_until(address.is_alive)
    assert address.ask("get", timeout=5) == [0, 1, 2]


def test_a_child_that_does_not_stop_in_time_is_abandoned_and_its_address_closed(
    tree: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """shutdown is a timeout: past it the stop goes on without the child, with an error log."""
    hang = threading.Event()
    spec = ChildSpec("r", lambda: Recorder(hang), shutdown=0.05)
    ref = tree([spec], RestartPolicy())
    wait_until(spec.address.is_alive)
    actor = spec.address.actor
    assert ref.stop(timeout=10)
    assert any("abandoning" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert spec.address.closed
    with pytest.raises(pykka.ActorDeadError):
        spec.address.tell(1)
    hang.set()
    assert isinstance(actor, Recorder)
    wait_until(lambda: actor.stopped)


def test_brutal_kill_does_not_wait_and_skips_on_stop(tree: Any) -> None:
    """brutal_kill: a child busy in a handler is left at once; it handles nothing more."""
    busy = threading.Event()
    spec = ChildSpec("r", Recorder, shutdown="brutal_kill")
    ref = tree([spec], RestartPolicy())
    wait_until(spec.address.is_alive)
    actor = spec.address.actor
    spec.address.tell(busy)
    spec.address.tell(1)
    assert ref.stop(timeout=10)
    busy.set()
    assert isinstance(actor, Recorder)
    wait_until(actor.actor_stopped.is_set)
    assert actor.seen == []
    assert not actor.stopped


def test_a_group_restart_drops_a_temporary_sibling(log: Journal, tree: Any) -> None:
    """one_for_all: a temporary sibling is stopped and not started again (OTP)."""
    children = [
        ChildSpec.of(Counter, "a", log, name="a"),
        ChildSpec.of(Counter, "t", log, name="t", restart="temporary"),
        ChildSpec.of(Counter, "c", log, name="c"),
    ]
    ref = tree(children, RestartPolicy(strategy="one_for_all", max_restarts=3))
    children[2].address.tell("crash")
    wait_until(lambda: log.lines.count("start c") == 2)
    assert [n for n, _, _ in ref.ask(WhichChildren())] == ["a", "c"]
    assert log.lines.count("start t") == 1
    assert children[1].address.closed


def test_a_group_restart_starts_a_transient_child_that_had_exited_normally(
    log: Journal, tree: Any
) -> None:
    """OTP keeps a transient child's spec after a normal exit; one_for_all starts it again."""
    children = [
        ChildSpec.of(Counter, "t", log, name="t", restart="transient"),
        ChildSpec.of(Counter, "b", log, name="b"),
    ]
    ref = tree(children, RestartPolicy(strategy="one_for_all", max_restarts=3))
    children[0].address.tell("exit")
    wait_until(lambda: ref.ask(WhichChildren())[0][1] is False)
    children[1].address.tell("crash")
    wait_until(lambda: log.lines.count("start b") == 2)
    assert log.lines.count("start t") == 2
    assert children[0].address.ask("get", timeout=5) == 0


def test_a_transient_child_supervisor_that_gives_up_stays_down(log: Journal, tree: Any) -> None:
    """A supervisor gives up with reason shutdown: not a crash for its parent (OTP)."""
    inner_children = specs(log, "x")
    inner = ChildSpec(
        "inner",
        lambda: Supervisor(inner_children, RestartPolicy(max_restarts=0), name="inner"),
        restart="transient",
    )
    ref = tree([inner], RestartPolicy(max_restarts=0))
    inner_children[0].address.tell("crash")
    wait_until(lambda: ref.ask(WhichChildren()) == [("inner", False, 0)])
    assert not tree.given_up  # the parent's intensity of 0 was not used up
    assert log.lines == ["start x"]  # x crashed (Counter logs only a clean stop); no restart


def test_a_stale_supervisor_cannot_close_an_address_its_successor_opened() -> None:
    """Only the last supervisor to open an address can close it."""
    address = Address("a")
    old, new = object(), object()
    address.reopen(old)
    address.reopen(new)
    address.close(old)
    assert not address.closed
    address.close(new)
    assert address.closed


def test_stopping_waits_for_each_child_to_finish_its_on_stop(tree: Any) -> None:
    """Reverse order, one at a time: b's on_stop has returned before a's begins."""
    order: list[str] = []
    lock = threading.Lock()

    class Slow(pykka.ThreadingActor):
        def __init__(self, name: str, release: threading.Event | None) -> None:
            super().__init__()
            self.name, self.release = name, release

        def on_stop(self) -> None:
            with lock:
                order.append(f"begin {self.name}")
            if self.release is not None:
                self.release.wait(0.05)  # a slow on_stop: nothing sets it
            with lock:
                order.append(f"end {self.name}")

    children = [
        ChildSpec("a", lambda: Slow("a", None)),
        ChildSpec("b", lambda: Slow("b", threading.Event())),
    ]
    ref = tree(children, RestartPolicy())
    ref.stop(timeout=10)
    assert order == ["begin b", "end b", "begin a", "end a"]
