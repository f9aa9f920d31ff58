"""Address: a stable reference to a supervised actor, valid across restarts.

pykka's `ActorRef` names one actor object; when a supervisor replaces a
crashed child with a fresh instance, refs to the old one would go dead.
An Address is the child's identity instead (Akka's ActorRef): it forwards to
whichever incarnation is current, and while none is (between a crash and the
restart, during backoff) it keeps messages in order in a bounded stash.

Every message goes to the incarnation as a `_Letter` through the public
`ActorRef.tell`, and the incarnation claims each letter before handling it.
A letter an incarnation did not claim before it ended (crashed, stopped
itself, was abandoned) is taken back into the stash for the next one, so a
restart loses only the message that crashed the child, without reading
another actor's inbox. A letter taken back cannot be claimed by the old
incarnation any more, so none is handled twice.

The lock makes "is there a current incarnation, and hand it the letter"
one step with taking letters back.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pykka

from actorq.errors import SupervisionError

logger = logging.getLogger(__name__)

DEFAULT_STASH_LIMIT = 10_000
"""Messages an Address keeps while no incarnation runs (Akka bounds its stash too)."""


class Undeliverable(SupervisionError):
    """An `ask` through an Address whose stash was full: the message went to dead letters."""

    def __init__(self, address: str, limit: int) -> None:
        super().__init__(f"{address}: {limit} messages wait for a restart already; message dropped")
        self.address = address
        self.limit = limit


class _Letter:
    """One message on its way through an Address; `owner` is the incarnation that may take it."""

    __slots__ = ("address", "message", "owner", "reply_to")

    def __init__(self, address: Address, message: Any, reply_to: pykka.Future[Any] | None) -> None:
        self.address = address
        self.message = message
        self.reply_to = reply_to
        self.owner: pykka.Actor | None = None


class _Unwrap:
    """The `on_receive` an Address installs: claim each letter, then handle its message."""

    __slots__ = ("actor", "address", "own")

    def __init__(self, address: Address, actor: pykka.Actor) -> None:
        self.address = address
        self.actor = actor
        self.own = actor.on_receive

    def __call__(self, message: Any) -> Any:
        if not (isinstance(message, _Letter) and message.address is self.address):
            return self.own(message)
        if not self.address.claim(self.actor, message):
            return None  # taken back for the next incarnation
        if message.reply_to is None:
            return self.own(message.message)
        # As pykka does for an ask: the error goes to the asker, the actor lives on.
        try:
            result = self.own(message.message)
        except Exception:
            message.reply_to.set_exception()
        else:
            message.reply_to.set(result)
        return None


def _fail(letter: _Letter, error: BaseException) -> None:
    if letter.reply_to is not None:
        letter.reply_to.set_exception((type(error), error, None))


class Address:
    """Send messages to a supervised actor, whichever incarnation is running.

    `stash_limit` bounds the messages kept while no incarnation runs; past it
    a message goes to `on_dead_letter(address, message)` (by default: only a
    log line) and an `ask` fails with `Undeliverable`.
    """

    __slots__ = (
        "_actor",
        "_closed",
        "_inflight",
        "_lock",
        "_owner",
        "_stash",
        "name",
        "on_dead_letter",
        "stash_limit",
    )

    def __init__(
        self,
        name: str,
        *,
        stash_limit: int = DEFAULT_STASH_LIMIT,
        on_dead_letter: Callable[[Address, Any], None] | None = None,
    ) -> None:
        if stash_limit < 0:
            raise ValueError("stash_limit cannot be negative")
        self.name = name
        self.stash_limit = stash_limit
        self.on_dead_letter = on_dead_letter
        self._lock = threading.Lock()
        self._actor: pykka.Actor | None = None
        self._owner: object | None = None
        self._stash: deque[_Letter] = deque()
        # Per incarnation, the letters handed to it that it has not claimed yet, in order.
        self._inflight: dict[pykka.Actor, deque[_Letter]] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._actor else "waiting")
        return f"<Address {self.name} ({state})>"

    def tell(self, message: Any) -> None:
        """Deliver without waiting; `pykka.ActorDeadError` once the child is gone for good."""
        self._deliver(_Letter(self, message, None))

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """Deliver and wait for the answer (or return a pykka Future with block=False)."""
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        self._deliver(_Letter(self, message, future))
        return future.get(timeout=timeout) if block else future

    def is_alive(self) -> bool:
        """True while an incarnation runs; False during a restart and after the end."""
        actor = self._actor
        return actor is not None and not actor.actor_stopped.is_set()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def actor(self) -> pykka.Actor | None:
        """The current incarnation (for supervisors and tests; do not keep it)."""
        return self._actor

    @property
    def stashed(self) -> int:
        """How many messages wait for the next incarnation."""
        return len(self._stash)

    def _deliver(self, letter: _Letter) -> None:
        with self._lock:
            if self._actor is not None and self._hand(self._actor, letter):
                return
            if self._closed:
                raise pykka.ActorDeadError(f"{self.name} is stopped")
            if len(self._stash) < self.stash_limit:
                self._stash.append(letter)
                return
        self._dead_letter(letter)

    def _hand(self, actor: pykka.Actor, letter: _Letter) -> bool:
        try:
            actor.actor_ref.tell(letter)
        except pykka.ActorDeadError:
            # Ended, and its hook has not taken its letters back yet: stash
            # behind them, which it will put first.
            return False
        letter.owner = actor
        self._inflight.setdefault(actor, deque()).append(letter)
        return True

    def _dead_letter(self, letter: _Letter) -> None:
        logger.warning(
            "%s: %d messages wait for a restart already; %r goes to dead letters",
            self.name,
            self.stash_limit,
            letter.message,
        )
        _fail(letter, Undeliverable(self.name, self.stash_limit))
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(self, letter.message)
            except Exception:
                logger.exception("%s: on_dead_letter raised", self.name)

    # The methods below are called by the supervisor and by the hooks it installs.

    def claim(self, actor: pykka.Actor, letter: _Letter) -> bool:
        """Called by `actor` before handling `letter`: False if it is no longer its to handle."""
        with self._lock:
            if letter.owner is not actor:
                return False
            letter.owner = None
            pending = self._inflight[actor]
            if pending[0] is letter:
                pending.popleft()
            else:  # pragma: no cover  (an inbox is FIFO; kept for safety)
                pending.remove(letter)
            return True

    def attach(self, actor: pykka.Actor, owner: object | None = None) -> None:
        """Make `actor` current, handing it the stashed messages first, in order.

        Any pykka actor can be attached: its `on_receive` is wrapped to take
        the messages out of their letters.
        """
        with self._lock:
            if self._closed or (owner is not None and owner is not self._owner):
                raise pykka.ActorDeadError(f"{self.name} is stopped")
            receive = actor.on_receive
            if not (isinstance(receive, _Unwrap) and receive.address is self):
                actor.on_receive = _Unwrap(self, actor)  # type: ignore[method-assign]
            while self._stash:
                if not self._hand(actor, self._stash[0]):
                    return
                self._stash.popleft()
            self._actor = actor

    def detach(self, actor: pykka.Actor) -> None:
        """Send new messages to the stash; `actor` still handles those it was given."""
        with self._lock:
            if self._actor is actor:
                self._actor = None

    def take_back(self, actor: pykka.Actor) -> None:
        """`actor` ended or is abandoned: what it did not claim goes first to the next one."""
        with self._lock:
            if self._actor is actor:
                self._actor = None
            pending = self._inflight.pop(actor, deque())
            for letter in pending:
                letter.owner = None
            self._stash.extendleft(reversed(pending))

    def close(self, owner: object | None = None) -> None:
        """The child is gone for good: fail waiting asks, refuse new messages.

        With `owner`, only the supervisor that opened the address last can
        close it: an old incarnation of a supervisor, late in its shutdown,
        cannot close an address the new one has opened again.
        """
        with self._lock:
            if owner is not None and owner is not self._owner:
                return
            self._closed = True
            self._actor = None
            stash, self._stash = self._stash, deque()
        for letter in stash:
            _fail(letter, pykka.ActorDeadError(f"{self.name} stopped before handling the message"))

    def reopen(self, owner: object | None = None) -> None:
        """Allow a closed address to take a new incarnation; `owner` holds it from now on."""
        with self._lock:
            self._closed = False
            self._owner = owner
