"""What actorq.supervision relies on in pykka, beyond its documented API.

`actorq/supervision/_pykka.py` starts an instance the factory built, and
abandons a hung one, through pykka internals; the Address relies on pykka's
documented hook order. If a pykka release changes any of this, these tests
fail first and name what changed.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from actorq.supervision import _pykka


class Recorder(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.release = threading.Event()
        self.stopped = threading.Event()

    def on_start(self) -> None:
        self.events.append("start")

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.release.wait(10)
        if message == "crash":
            raise RuntimeError("crash")
        self.events.append(f"got {message}")
        return message

    def on_failure(self, *exc_info: Any) -> None:
        self.events.append("failure")
        self.stopped.set()

    def on_stop(self) -> None:
        self.events.append("stop")
        self.stopped.set()


def test_an_instance_built_elsewhere_starts_registered_and_runs_on_start() -> None:
    """`_start_actor_loop` still exists and starts the instance's thread."""
    assert callable(getattr(pykka.ThreadingActor, "_start_actor_loop", None))
    actor = Recorder()
    _pykka.start(actor)
    assert actor.actor_ref.ask("ping", timeout=5) == "ping"
    assert actor.actor_ref in pykka.ActorRegistry.get_all()
    actor.actor_ref.stop(timeout=5)
    assert actor.events == ["start", "got ping", "stop"]


def test_a_crash_in_a_tell_handler_runs_on_failure_and_ends_the_actor() -> None:
    """A supervisor learns of crashes from on_failure; a crashed actor takes no more messages."""
    actor = Recorder()
    _pykka.start(actor)
    actor.actor_ref.tell("crash")
    assert actor.stopped.wait(5)
    assert actor.actor_stopped.is_set()
    assert actor.events == ["start", "failure"]


def test_a_crash_in_an_ask_handler_goes_to_the_asker() -> None:
    """The Address answers letters the same way: the asker gets the error, the actor lives."""
    actor = Recorder()
    _pykka.start(actor)
    future = actor.actor_ref.ask("crash", block=False)
    with pytest.raises(RuntimeError):
        future.get(timeout=5)
    assert actor.actor_ref.is_alive()
    actor.actor_ref.stop(timeout=5)


def test_actor_stopped_is_set_before_on_stop_runs() -> None:
    """Why supervision waits on its own end-of-incarnation event, not on actor_stopped."""
    seen: list[bool] = []

    class Probe(Recorder):
        def on_stop(self) -> None:
            seen.append(self.actor_stopped.is_set())

    actor = Probe()
    _pykka.start(actor)
    actor.actor_ref.stop(timeout=5)
    assert seen == [True]


def test_an_abandoned_actor_ends_after_its_handler_without_more_messages() -> None:
    """Setting actor_stopped ends the loop after the current handler; on_stop does not run."""
    actor = Recorder()
    _pykka.start(actor)
    actor.actor_ref.tell("block")
    actor.actor_ref.tell("after")
    _pykka.abandon(actor)
    assert actor.actor_ref not in pykka.ActorRegistry.get_all()
    actor.release.set()
    threads = [t for t in threading.enumerate() if t.name.startswith("Recorder")]
    for thread in threads:
        thread.join(5)
    assert "got after" not in actor.events
    assert "stop" not in actor.events
