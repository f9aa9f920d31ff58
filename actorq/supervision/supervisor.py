"""The Supervisor actor: restarts failed children by a RestartPolicy.

Semantics follow Erlang/OTP's supervisor and Akka's:

- children start in the order of their specs and stop in reverse order;
- restart types: permanent (always restarted), transient (only after an
  abnormal exit), temporary (never);
- strategies one_for_one, one_for_all, rest_for_one;
- intensity: at most `max_restarts` restarts within `within` seconds; each
  child exit counts once, even when one_for_all restarts every sibling. Past
  it the supervisor stops its children and escalates: it fails itself, so
  its own supervisor applies its policy; a root supervisor calls `on_give_up`.
- the decider: an exception in `give_up_on` (or not in `retry_on`) escalates
  at once;
- backoff between restarts, reset after the child ran `reset_after` seconds;
- a restarted child keeps its `Address`; only the crashing message is lost.

A child is any pykka actor. The supervisor wraps the instance's `on_start`,
`on_failure` and `on_stop` hooks: they run in the child's thread, call the
child's own hook first, and then tell the supervisor. As in pykka, an
exception raised while answering an `ask` goes back to the asker and does
not crash the child; an exception in a `tell` handler does.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pykka

from actorq.clock import Clock, SystemClock
from actorq.errors import Escalated
from actorq.supervision.address import Address
from actorq.supervision.policy import RestartPolicy, exception_lineage

logger = logging.getLogger(__name__)

RestartType = Literal["permanent", "transient", "temporary"]


@dataclass(frozen=True, eq=False)
class ChildSpec:
    """How to build and treat one child. The spec owns the child's Address."""

    name: str
    factory: Callable[[], pykka.Actor]
    restart: RestartType = "permanent"
    shutdown: float = 5.0
    address: Address = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.restart not in ("permanent", "transient", "temporary"):
            raise ValueError(f"restart must be permanent, transient or temporary: {self.restart!r}")
        if self.address is None:
            object.__setattr__(self, "address", Address(self.name))

    @classmethod
    def of(
        cls,
        actor_class: type[pykka.Actor],
        *args: Any,
        name: str,
        restart: RestartType = "permanent",
        shutdown: float = 5.0,
        **kwargs: Any,
    ) -> ChildSpec:
        return cls(name, lambda: actor_class(*args, **kwargs), restart, shutdown)


class SupervisorObserver:
    """No-op hooks a supervisor calls in its own thread; exceptions in them are logged."""

    def child_restarted(self, supervisor: str, child: str, error: BaseException | None) -> None:
        """A child is being restarted after `error` (None: a normal exit of a permanent child)."""

    def escalated(self, supervisor: str, error: Escalated) -> None:
        """The supervisor gave up."""


# Messages a supervisor receives. Facts from children, commands from anyone.
@dataclass(frozen=True, slots=True)
class _ChildFailed:
    name: str
    incarnation: pykka.Actor
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _ChildExited:
    name: str
    incarnation: pykka.Actor


@dataclass(frozen=True, slots=True)
class _RestartDue:
    names: tuple[str, ...]
    generation: int


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Replace a child now, as if it had failed (for a child known to be hung)."""

    name: str
    reason: str = "restart requested"


@dataclass(frozen=True, slots=True)
class StartChild:
    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class WhichChildren:
    """Ask: the children as (name, running, restarts) tuples, in start order."""


class ChildHung(Exception):
    """Recorded as the error of a child replaced by `RestartChild`."""


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    actor: pykka.Actor | None = None
    started_at: float = 0.0
    backoff_step: int = 0
    last_delay: float | None = None
    restarts: int = 0
    generation: int = 0


class Supervisor(pykka.ThreadingActor):
    """Supervises an ordered list of children. See the module docstring."""

    use_daemon_thread = True

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        policy: RestartPolicy | None = None,
        *,
        name: str = "supervisor",
        clock: Clock | None = None,
        on_give_up: Callable[[Escalated], None] | None = None,
        observer: SupervisorObserver | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.rng = rng or random.Random()
        self.policy = policy or RestartPolicy()
        self.clock = clock or SystemClock()
        self.on_give_up = on_give_up
        self.observer = observer or SupervisorObserver()
        self._children: list[_Child] = [_Child(spec) for spec in children]
        names = [c.spec.name for c in self._children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._failures: list[float] = []
        self._given_up = False

    # -- hooks ------------------------------------------------------------

    def on_start(self) -> None:
        """Runs in the supervisor's thread: start every child in order."""
        for child in self._children:
            child.spec.address.reopen()
            self._start(child)

    def on_stop(self) -> None:
        """Runs in the supervisor's thread: stop children in reverse order."""
        self._stop_children(self._children, final=True)

    def on_failure(self, *exc_info: Any) -> None:
        """The supervisor itself crashed: take its children down with it."""
        self._stop_children(self._children, final=False)

    # -- messages ---------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ChildFailed):
            self._on_exit(message.name, message.incarnation, message.error, abnormal=True)
        elif isinstance(message, _ChildExited):
            self._on_exit(message.name, message.incarnation, None, abnormal=False)
        elif isinstance(message, _RestartDue):
            self._restart_due(message)
        elif isinstance(message, RestartChild):
            child = self._find(message.name)
            if child is not None and isinstance(child.actor, pykka.Actor):
                actor = child.actor
                child.spec.address.abandon(actor)
                self._on_exit(child.spec.name, actor, ChildHung(message.reason), abnormal=True)
        elif isinstance(message, StartChild):
            return self._add_child(message.spec)
        elif isinstance(message, WhichChildren):
            return [(c.spec.name, c.spec.address.is_alive(), c.restarts) for c in self._children]
        else:
            return super().on_receive(message)
        return None

    def _find(self, name: str) -> _Child | None:
        return next((c for c in self._children if c.spec.name == name), None)

    def _add_child(self, spec: ChildSpec) -> Address:
        if self._find(spec.name) is not None:
            raise ValueError(f"a child named {spec.name!r} exists already")
        child = _Child(spec)
        self._children.append(child)
        spec.address.reopen()
        self._start(child)
        return spec.address

    # -- starting and stopping ---------------------------------------------

    def _start(self, child: _Child) -> None:
        try:
            actor = child.spec.factory()
        except Exception as exc:
            logger.exception("%s: building child %s failed", self.name, child.spec.name)
            child.actor = _UNBUILT
            self.actor_ref.tell(_ChildFailed(child.spec.name, _UNBUILT, exc))
            return
        self._instrument(child.spec, actor)
        actor.use_daemon_thread = True  # type: ignore[attr-defined]  # ThreadingActor option
        child.actor = actor
        child.started_at = self.clock.now()
        child.spec.address.attach(actor)
        pykka.ActorRegistry.register(actor.actor_ref)
        actor._start_actor_loop()

    def _instrument(self, spec: ChildSpec, actor: pykka.Actor) -> None:
        me = self.actor_ref
        own_start, own_failure, own_stop = actor.on_start, actor.on_failure, actor.on_stop

        def notify(message: Any) -> None:
            # If the supervisor is gone, nobody is left to restart the child.
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(message)

        def on_start() -> None:
            try:
                own_start()
            except Exception as exc:
                spec.address.detach(actor)
                notify(_ChildFailed(spec.name, actor, exc))
                raise

        def on_failure(*exc_info: Any) -> None:
            try:
                own_failure(*exc_info)
            finally:
                spec.address.detach(actor)
                notify(_ChildFailed(spec.name, actor, exc_info[1]))

        def on_stop() -> None:
            try:
                own_stop()
            finally:
                spec.address.detach(actor, rescue_inbox=False)
                notify(_ChildExited(spec.name, actor))

        actor.on_start = on_start  # type: ignore[method-assign]
        actor.on_failure = on_failure  # type: ignore[method-assign,assignment]
        actor.on_stop = on_stop  # type: ignore[method-assign]

    def _stop_children(self, children: Sequence[_Child], *, final: bool) -> None:
        for child in reversed(children):
            actor, child.actor = child.actor, None
            child.generation += 1  # pending restarts of this child are void
            if isinstance(actor, pykka.Actor):
                child.spec.address.stop_gracefully(actor)
                if not actor.actor_stopped.wait(child.spec.shutdown):
                    logger.warning(
                        "%s: child %s did not stop within %.1fs; abandoning its thread",
                        self.name,
                        child.spec.name,
                        child.spec.shutdown,
                    )
                    child.spec.address.abandon(actor)
            if final:
                child.spec.address.close()

    # -- restarts -----------------------------------------------------------

    def _on_exit(
        self, name: str, incarnation: pykka.Actor, error: BaseException | None, *, abnormal: bool
    ) -> None:
        child = self._find(name)
        if child is None or self._given_up or child.actor is not incarnation:
            return  # a late word from an incarnation replaced or stopped on purpose
        child.actor = None
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and not abnormal):
            self._children.remove(child)
            child.spec.address.close()
            return
        now = self.clock.now()
        if now - child.started_at >= self.policy.backoff.reset_after:
            child.backoff_step, child.last_delay = 0, None
        decision = self.policy.decide(
            None if error is None else exception_lineage(error),
            self._failures,
            now,
            step=child.backoff_step,
            last_delay=child.last_delay,
            rng=self.rng,
        )
        if decision.reason != "give_up_on":
            self._failures.append(now)
            if self.policy.within is not None:
                self._failures = [t for t in self._failures if t > now - self.policy.within]
        if not decision.restart:
            self._give_up(child, error)
            return
        logger.warning("%s: restarting %s after %r", self.name, name, error)
        self._safely(self.observer.child_restarted, self.name, name, error)
        delay = decision.delay
        child.backoff_step += 1
        child.last_delay = delay
        child.restarts += 1
        group = self._restart_group(child)
        self._stop_children([c for c in group if c is not child], final=False)
        if delay <= 0:
            self._start_group(group)
        else:
            generation = child.generation
            names = tuple(c.spec.name for c in group)
            me = self.actor_ref
            self.clock.call_at(
                now + delay, lambda: _tell_quietly(me, _RestartDue(names, generation))
            )

    def _restart_group(self, child: _Child) -> list[_Child]:
        strategy = self.policy.strategy
        if strategy == "one_for_all":
            return list(self._children)
        if strategy == "rest_for_one":
            return self._children[self._children.index(child) :]
        return [child]

    def _restart_due(self, message: _RestartDue) -> None:
        group = [c for c in self._children if c.spec.name in message.names]
        failed = self._find(message.names[0])
        if self._given_up or failed is None or failed.generation != message.generation:
            return
        self._start_group(group)

    def _start_group(self, group: Sequence[_Child]) -> None:
        for child in group:
            if child.actor is None and child in self._children:
                self._start(child)

    def _give_up(self, child: _Child, error: BaseException | None) -> None:
        self._given_up = True
        escalation = Escalated(self.name, child.spec.name, error)
        logger.error("%s: giving up: %s", self.name, escalation)
        self._safely(self.observer.escalated, self.name, escalation)
        self._stop_children(self._children, final=self.on_give_up is not None)
        if self.on_give_up is not None:
            self._safely(self.on_give_up, escalation)
            self.actor_ref.stop(block=False)
        else:
            raise escalation  # fail this supervisor: the parent's policy applies

    def _safely(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("%s: hook %r raised", self.name, hook)


_UNBUILT: Any = object()  # the incarnation of a child whose factory raised


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    # The supervisor may have stopped before the backoff ran out.
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
