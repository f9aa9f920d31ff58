"""One incarnation of a child: its actor, and the hooks that report on it.

The supervisor wraps the instance's `on_start`, `on_failure` and `on_stop`
before its thread starts (the Address wraps `on_receive`). The wrappers run in the child's
thread: they call the child's own hook first, then take back the letters the
incarnation did not claim (see `address`), then mark the moment on the
incarnation's events and tell the supervisor.

`started` is set when `on_start` has returned or raised; `ended` when the
last hook of the incarnation has returned: pykka's own `actor_stopped` is
set before `on_stop` runs, so waiting on it would let the next stop (or the
next incarnation) overlap this one's cleanup.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from actorq.supervision.address import Address


class Incarnation:
    __slots__ = ("actor", "ended", "started")

    def __init__(self, actor: pykka.Actor | None) -> None:
        self.actor = actor
        self.started = threading.Event()
        self.ended = threading.Event()
        if actor is None:  # its factory raised: it never ran
            self.started.set()
            self.ended.set()


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A fact for the supervisor: an incarnation of child `name` ended.

    `abnormal`: it crashed (OTP: any exit reason but normal and shutdown).
    `error`: the exception, or for a child supervisor that gave up its
    `Escalated` (a shutdown, so `abnormal` is False).
    """

    name: str
    incarnation: Incarnation
    error: BaseException | None
    abnormal: bool


class _Hooks:
    """The wrappers of one incarnation's hooks; each runs in the child's thread."""

    __slots__ = ("actor", "address", "incarnation", "name", "own", "shutdown_reason", "supervisor")

    def __init__(
        self,
        name: str,
        address: Address,
        incarnation: Incarnation,
        supervisor: pykka.ActorRef[Any],
        shutdown_reason: Callable[[], BaseException | None] | None,
    ) -> None:
        actor = incarnation.actor
        assert actor is not None
        self.actor = actor
        self.name = name
        self.address = address
        self.incarnation = incarnation
        self.supervisor = supervisor
        self.shutdown_reason = shutdown_reason
        self.own = (actor.on_start, actor.on_failure, actor.on_stop)

    def _ended(self, error: BaseException | None, abnormal: bool) -> None:
        self.address.take_back(self.actor)
        self.incarnation.ended.set()
        # If the supervisor is gone, nobody is left to restart the child.
        with contextlib.suppress(pykka.ActorDeadError):
            self.supervisor.tell(ChildExited(self.name, self.incarnation, error, abnormal))

    def on_start(self) -> None:
        try:
            self.own[0]()
        except Exception as exc:
            # pykka runs neither on_failure nor on_stop after a failed on_start.
            self._ended(exc, True)
            raise
        finally:
            self.incarnation.started.set()

    def on_failure(self, *exc_info: Any) -> None:
        try:
            self.own[1](*exc_info)
        finally:
            self._ended(exc_info[1], True)

    def on_stop(self) -> None:
        error: BaseException | None = None
        try:
            self.own[2]()
        except Exception as exc:
            error = exc
            raise
        finally:
            if error is None and self.shutdown_reason is not None:
                self._ended(self.shutdown_reason(), False)
            else:
                self._ended(error, error is not None)


def instrument(
    name: str,
    address: Address,
    incarnation: Incarnation,
    supervisor: pykka.ActorRef[Any],
    shutdown_reason: Callable[[], BaseException | None] | None = None,
) -> None:
    """Wrap the hooks of `incarnation.actor`; `shutdown_reason()` names a normal exit's cause."""
    hooks = _Hooks(name, address, incarnation, supervisor, shutdown_reason)
    actor = hooks.actor
    actor.on_start = hooks.on_start  # type: ignore[method-assign]
    actor.on_failure = hooks.on_failure  # type: ignore[method-assign,assignment]
    actor.on_stop = hooks.on_stop  # type: ignore[method-assign]
