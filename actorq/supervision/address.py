"""Address: a stable reference to a supervised actor, valid across restarts.

pykka's `ActorRef` names one actor object; when a supervisor replaces a
crashed child with a fresh instance, refs to the old one would go dead.
An Address is the child's identity instead (Akka's ActorRef): it forwards to
whichever incarnation is current, and while none is (between a crash and the
restart, during backoff) it keeps messages in order in a stash. Messages the
crashed incarnation had not yet taken are moved to the stash too, so a
restart loses only the message that crashed the child.

The lock makes "is there a current incarnation, and put into its inbox" one
step, so that no message can slip into an inbox that is being drained.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import pykka
from pykka import messages as pykka_messages
from pykka._envelope import Envelope  # pykka>=4.1,<5: the envelope is what an inbox holds


class Address:
    """Send messages to a supervised actor, whichever incarnation is running."""

    __slots__ = ("_actor", "_closed", "_lock", "_stash", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._actor: pykka.Actor | None = None
        self._stash: deque[Envelope[Any]] = deque()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._actor else "waiting")
        return f"<Address {self.name} ({state})>"

    def tell(self, message: Any) -> None:
        """Deliver without waiting; `pykka.ActorDeadError` once the child is gone for good."""
        self._deliver(Envelope(message))

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Deliver and wait for the answer (or return a pykka Future with block=False)."""
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        self._deliver(Envelope(message, reply_to=future))
        return future.get(timeout=timeout) if block else future

    def is_alive(self) -> bool:
        """True while an incarnation runs; False during a restart and after the end."""
        return self._actor is not None and not self._actor.actor_stopped.is_set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def actor(self) -> pykka.Actor | None:
        """The current incarnation (for supervisors and tests; do not keep it)."""
        return self._actor

    def _deliver(self, envelope: Envelope[Any]) -> None:
        with self._lock:
            if self._actor is not None:
                self._actor.actor_inbox.put(envelope)
            elif self._closed:
                raise pykka.ActorDeadError(f"{self.name} is stopped")
            else:
                self._stash.append(envelope)

    # The methods below are called by the supervisor and by the hooks it installs.

    def attach(self, actor: pykka.Actor) -> None:
        """Make `actor` current, handing it the stashed messages first, in order."""
        with self._lock:
            if self._closed:
                raise pykka.ActorDeadError(f"{self.name} is stopped")
            while self._stash:
                actor.actor_inbox.put(self._stash.popleft())
            self._actor = actor

    def detach(self, actor: pykka.Actor, *, rescue_inbox: bool = True) -> None:
        """Stop forwarding to `actor`; keep what it had not taken for the next incarnation."""
        with self._lock:
            if self._actor is actor:
                self._actor = None
            if not rescue_inbox:
                return
            rescued: list[Envelope[Any]] = []
            inbox = actor.actor_inbox
            while not inbox.empty():
                envelope = inbox.get()
                if not isinstance(envelope.message, pykka_messages._ActorStop):
                    rescued.append(envelope)
            self._stash.extendleft(reversed(rescued))

    def stop_gracefully(self, actor: pykka.Actor) -> None:
        """Let `actor` finish what is in its inbox, then stop; new messages wait in the stash."""
        with self._lock:
            if self._actor is actor:
                self._actor = None
            actor.actor_inbox.put(Envelope(pykka_messages._ActorStop()))

    def abandon(self, actor: pykka.Actor) -> None:
        """Give up on a hung incarnation: its thread exits when (if) its handler returns."""
        actor.actor_stopped.set()
        self.detach(actor)
        # Wake the thread if it was in fact idle in inbox.get(), so it can exit.
        actor.actor_inbox.put(Envelope(pykka_messages._ActorStop()))

    def close(self) -> None:
        """The child is gone for good: fail waiting asks, refuse new messages."""
        with self._lock:
            self._closed = True
            self._actor = None
            stash, self._stash = self._stash, deque()
        for envelope in stash:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception(
                    (
                        pykka.ActorDeadError,
                        pykka.ActorDeadError(f"{self.name} stopped before handling the message"),
                        None,
                    )
                )

    def reopen(self) -> None:
        """Allow a closed address to take a new incarnation (a child added again)."""
        with self._lock:
            self._closed = False
