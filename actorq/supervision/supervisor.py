"""The Supervisor actor: restarts failed children by a RestartPolicy.

Semantics are Erlang/OTP's supervisor (supervisor(3)); the README's
"Supervision without the job system" has the full table:

- children start in the order of their specs, each start (and a child
  supervisor's whole subtree) finished before the next begins; they stop in
  reverse order, each stop finished before the next;
- restart types: permanent (always restarted), transient (only after an
  abnormal exit; after a normal one it keeps its spec, and a later
  one_for_all / rest_for_one restart starts it again), temporary (never
  restarted; a group restart stops it and drops it);
- strategies one_for_one, one_for_all, rest_for_one;
- intensity: at most `max_restarts` restarts within `within` seconds; each
  child exit counts once, even when one_for_all restarts every sibling. Past
  it the supervisor stops its children and exits with reason shutdown: a
  parent restarts it only if it is permanent; a root calls `on_give_up`;
- the decider (Akka's): an exception in `give_up_on` (or not in `retry_on`)
  gives up at once;
- backoff between restarts, reset after the child ran `reset_after` seconds;
- a restarted child keeps its `Address`; only the crashing message is lost.

A child is any pykka actor. The supervisor wraps the instance's hooks (see
`incarnation`). As in pykka, an exception raised while answering an `ask`
goes back to the asker and does not crash the child; one in a `tell`
handler does.

Starts are synchronous, as OTP's start_link: a child's `on_start` that waits
on its own supervisor (an `ask`) deadlocks, as a call to the supervisor from
a gen_server's init does in OTP.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from actorq.clock import Clock, SystemClock
from actorq.errors import Escalated
from actorq.supervision import _pykka
from actorq.supervision.incarnation import ChildExited, Incarnation, instrument
from actorq.supervision.policy import RestartPolicy, exception_lineage
from actorq.supervision.spec import (
    ChildHung,
    ChildSpec,
    RestartChild,
    RestartType,
    Shutdown,
    StartChild,
    WhichChildren,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ChildHung",
    "ChildSpec",
    "RestartChild",
    "RestartType",
    "Shutdown",
    "StartChild",
    "Supervisor",
    "SupervisorObserver",
    "WhichChildren",
]


class SupervisorObserver:
    """No-op hooks a supervisor calls in its own thread; exceptions in them are logged."""

    def child_restarted(self, supervisor: str, child: str, error: BaseException | None) -> None:
        """A child is being restarted after `error` (None: a normal exit of a permanent child)."""

    def escalated(self, supervisor: str, error: Escalated) -> None:
        """The supervisor gave up."""


@dataclass(frozen=True, slots=True)
class _RestartDue:
    names: tuple[str, ...]
    generation: int


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    run: Incarnation | None = None
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
        self.gave_up: Escalated | None = None
        """Why this supervisor gave up, once it has (its exit is then a shutdown)."""

    # -- hooks ------------------------------------------------------------

    def on_start(self) -> None:
        """Runs in the supervisor's thread: start every child in order, each to the end."""
        # Open every address first, so that a child may send to a later sibling
        # from its on_start: the message waits in the sibling's stash.
        for child in self._children:
            child.spec.address.reopen(self)
        for child in self._children:
            self._start_child(child)

    def on_stop(self) -> None:
        """Runs in the supervisor's thread: stop children in reverse order, each to the end."""
        self._stop_children(self._children, final=True)

    def on_failure(self, *exc_info: Any) -> None:
        """The supervisor itself crashed: take its children down with it."""
        self._stop_children(self._children, final=True)

    # -- messages ---------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildExited):
            self._on_exit(message)
        elif isinstance(message, _RestartDue):
            self._restart_due(message)
        elif isinstance(message, RestartChild):
            self._replace(message)
        elif isinstance(message, StartChild):
            return self._add_child(message.spec)
        elif isinstance(message, WhichChildren):
            return [(c.spec.name, c.spec.address.is_alive(), c.restarts) for c in self._children]
        else:
            return super().on_receive(message)
        return None

    def _find(self, name: str) -> _Child | None:
        return next((c for c in self._children if c.spec.name == name), None)

    def _add_child(self, spec: ChildSpec) -> Any:
        if self.gave_up is not None:
            raise pykka.ActorDeadError(f"{self.name} has given up")
        if self._find(spec.name) is not None:
            raise ValueError(f"a child named {spec.name!r} exists already")
        child = _Child(spec)
        self._children.append(child)
        spec.address.reopen(self)
        self._start_child(child)
        return spec.address

    def _replace(self, message: RestartChild) -> None:
        child = self._find(message.name)
        if child is None or child.run is None or child.run.actor is None:
            return
        run = child.run
        self._abandon(child.spec, run.actor)  # type: ignore[arg-type]
        if self.gave_up is not None:
            return
        # A replacement asked for (a worker hung in a job that timed out) is a
        # decision about the child, not a crash of the tree: it does not count
        # toward the intensity, or a burst of bad jobs would stop everyone's.
        child.run = None
        error = ChildHung(message.reason)
        logger.warning("%s: replacing %s: %s", self.name, child.spec.name, message.reason)
        self._safely(self.observer.child_restarted, self.name, child.spec.name, error)
        child.restarts += 1
        self._restart(child, 0.0)

    # -- starting and stopping ---------------------------------------------

    def _start_child(self, child: _Child) -> None:
        spec = child.spec
        try:
            actor = spec.factory()
        except Exception as exc:
            logger.exception("%s: building child %s failed", self.name, spec.name)
            child.run = Incarnation(None)
            self.actor_ref.tell(ChildExited(spec.name, child.run, exc, True))
            return
        run = Incarnation(actor)
        reason = (lambda: actor.gave_up) if isinstance(actor, Supervisor) else None
        instrument(spec.name, spec.address, run, self.actor_ref, reason)
        actor.use_daemon_thread = True  # type: ignore[attr-defined]  # ThreadingActor option
        child.run = run
        child.started_at = self.clock.now()
        spec.address.reopen(self)
        spec.address.attach(actor, self)
        _pykka.start(actor)
        # OTP's start_link: the next child starts only once this one has.
        run.started.wait()

    def _stop_children(self, children: Sequence[_Child], *, final: bool) -> None:
        for child in reversed(children):
            self._stop_child(child)
            if final:
                child.spec.address.close(self)

    def _stop_child(self, child: _Child) -> None:
        run, child.run = child.run, None
        child.generation += 1  # pending restarts of this child are void
        if run is None or run.actor is None:
            return
        actor, spec = run.actor, child.spec
        timeout = spec.stop_timeout(isinstance(actor, Supervisor))
        if timeout == 0:  # brutal_kill
            self._abandon(spec, actor)
            return
        spec.address.detach(actor)
        actor.actor_ref.stop(block=False)
        if not run.ended.wait(timeout):
            logger.error(
                "%s: child %s did not stop within %.1fs; abandoning it",
                self.name,
                spec.name,
                timeout,
            )
            self._abandon(spec, actor)

    def _abandon(self, spec: ChildSpec, actor: pykka.Actor) -> None:
        spec.address.take_back(actor)
        _pykka.abandon(actor)

    # -- restarts -----------------------------------------------------------

    def _on_exit(self, exit: ChildExited) -> None:
        child = self._find(exit.name)
        if child is None or self.gave_up is not None or child.run is not exit.incarnation:
            return  # a late word from an incarnation replaced or stopped on purpose
        child.run = None
        restart = child.spec.restart
        if restart == "temporary":
            self._children.remove(child)
            child.spec.address.close(self)
            return
        if restart == "transient" and not exit.abnormal:
            # OTP keeps the spec: a later group restart starts the child again.
            child.spec.address.close(self)
            return
        now = self.clock.now()
        if now - child.started_at >= self.policy.backoff.reset_after:
            child.backoff_step, child.last_delay = 0, None
        error = exit.error
        decision = self.policy.decide(
            exception_lineage(error) if exit.abnormal and error is not None else None,
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
        logger.warning("%s: restarting %s after %r", self.name, exit.name, error)
        self._safely(self.observer.child_restarted, self.name, exit.name, error)
        child.backoff_step += 1
        child.last_delay = decision.delay
        child.restarts += 1
        self._restart(child, decision.delay)

    def _restart(self, child: _Child, delay: float) -> None:
        """Restart `child` and its group (by the strategy), after `delay` seconds."""
        group = self._restart_group(child)
        for other in reversed(group):
            if other is child:
                continue
            self._stop_child(other)
            if other.spec.restart == "temporary":
                # OTP never restarts a temporary child: a group restart drops it.
                self._children.remove(other)
                other.spec.address.close(self)
        group = [c for c in group if c in self._children]
        if delay <= 0:
            self._start_group(group)
        else:
            names = tuple(c.spec.name for c in group)
            due = _RestartDue(names, child.generation)
            me = self.actor_ref
            self.clock.call_at(self.clock.now() + delay, lambda: _tell_quietly(me, due))

    def _restart_group(self, child: _Child) -> list[_Child]:
        strategy = self.policy.strategy
        if strategy == "one_for_all":
            return list(self._children)
        if strategy == "rest_for_one":
            return self._children[self._children.index(child) :]
        return [child]

    def _restart_due(self, message: _RestartDue) -> None:
        failed = self._find(message.names[0])
        if self.gave_up is not None or failed is None or failed.generation != message.generation:
            return
        self._start_group([c for c in self._children if c.spec.name in message.names])

    def _start_group(self, group: Sequence[_Child]) -> None:
        for child in group:
            if child.run is None and child in self._children:
                self._start_child(child)

    def _give_up(self, child: _Child, error: BaseException | None) -> None:
        escalation = Escalated(self.name, child.spec.name, error)
        self.gave_up = escalation
        logger.error("%s: giving up: %s", self.name, escalation)
        self._safely(self.observer.escalated, self.name, escalation)
        self._stop_children(self._children, final=True)
        self._children = [c for c in self._children if c.spec.restart != "temporary"]
        if self.on_give_up is not None:
            self._safely(self.on_give_up, escalation)
        # OTP: exit with reason shutdown. A parent restarts a permanent child
        # supervisor (counting it), and leaves a transient or temporary one down.
        self.actor_ref.stop(block=False)

    def _safely(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("%s: hook %r raised", self.name, hook)


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    # The supervisor may have stopped before the backoff ran out.
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
