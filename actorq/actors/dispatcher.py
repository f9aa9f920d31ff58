"""The Dispatcher actor: a thin shell over the decision core.

It feeds each message (and, through `submit`, each caller's submission) to
`DispatchCore`, persists the events the core decided on, and interprets the
effects in order: `now` effects at once, `durable` effects once the events
are in the journal. All decisions live in `actorq.core.dispatch`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from actorq.actors.board import ResultBoard
from actorq.actors.worker import Grant
from actorq.clock import Clock
from actorq.core import effects as fx
from actorq.core import messages as m
from actorq.core.dispatch import DispatchConfig, DispatchCore, Refused
from actorq.core.events import Failed, Succeeded
from actorq.core.job import JobSpec
from actorq.core.state import DispatcherState
from actorq.errors import JournalUnavailable, SystemNotRunning
from actorq.middleware import JobOutcome, MiddlewareStack
from actorq.persistence.journal import Journal
from actorq.persistence.persistent import PersistentActor
from actorq.supervision.address import Address

logger = logging.getLogger(__name__)

_epochs = itertools.count(1)
T = TypeVar("T")


class Dispatcher(PersistentActor):
    persistence_id = "dispatcher"

    def __init__(
        self,
        journal: Journal,
        *,
        clock: Clock,
        board: ResultBoard,
        mailboxes: Mapping[str, Address],
        workers: list[str],
        restart_worker: Callable[[str, str], None],
        config: DispatchConfig,
        port: DispatcherPort,
        rng: random.Random | None = None,
        middleware: MiddlewareStack | None = None,
        remote: RemoteWorkers | None = None,
        **persistence: Any,
    ) -> None:
        super().__init__(journal, clock=clock, **persistence)
        self.remote = remote
        self.board = board
        self.mailboxes = mailboxes
        self.restart_worker = restart_worker
        self.port = port
        self.middleware = middleware or MiddlewareStack()
        self._grants: dict[str, collections.deque[Grant]] = {}
        # A cluster's journal says whether this node's lease surely still runs;
        # a leader whose lease is in doubt grants nothing (its successor will).
        self._lease_valid: Callable[[], bool] | None = getattr(journal, "lease_valid", None)
        self.core = DispatchCore(config, workers, epoch=next(_epochs), rng=rng or random.Random())

    @property
    def state(self) -> DispatcherState:
        return self.core.state

    # -- persistence -----------------------------------------------------------

    def apply(self, event: Any) -> None:
        self.core.state.apply(event)

    def reset(self) -> None:
        self.core.state = DispatcherState()

    def on_journal_unavailable(self, error: Any) -> None:
        self.board.unavailable = None if error is None else str(error)

    def snapshot_state(self) -> Any:
        return self.core.state.to_snapshot()

    def state_size(self) -> int:
        return len(self.core.state.jobs)

    def restore_snapshot(self, data: Any) -> None:
        self.core.state = DispatcherState.from_snapshot(data)

    def on_recovered(self) -> None:
        self.core.recovered(
            self.clock.now(), self.port.take_unjournaled(), workers_alive=self.port.restarted
        )
        self._run(self.core.take())
        self.port.attach(self)

    def on_stop(self) -> None:
        self.port.detach(self)
        super().on_stop()

    def on_failure(self, *exc_info: Any) -> None:
        self.port.detach(self)
        super().on_failure(*exc_info)

    def after_commit_hook(self, events: list[Any]) -> None:
        if self.observer is not None:
            self._notify(self.observer.committed, events, self.core.state)
            if self.core.limits:
                limits = self.core.limits
                self._notify(self.observer.limits_changed, limits.waiting(), dict(limits.deferred))
        if self.middleware.on_outcomes:
            self._outcomes(events)

    def _outcomes(self, events: list[Any]) -> None:
        """Tell middleware of the outcomes now in the journal: success, retry, or dead."""
        middleware = self.middleware
        jobs = self.core.state.jobs
        for event in events:
            kind = type(event)
            if kind is not Failed and kind is not Succeeded:
                continue
            job = jobs.get(event.id)
            if job is None:
                continue
            spec = job.spec
            if kind is Succeeded:
                if middleware.on_succeeded:
                    outcome = JobOutcome(
                        event.id,
                        spec.task,
                        spec.queue,
                        event.attempt,
                        "succeeded",
                        event.at,
                        event.ran,
                    )
                    middleware.call(middleware.on_succeeded, outcome)
                continue
            dead = event.retry_at is None
            failure = JobOutcome(
                event.id,
                spec.task,
                spec.queue,
                event.attempt,
                "dead" if dead else "retrying",
                event.at,
                event.ran,
                event.error,
                event.traceback,
                event.delay,
            )
            middleware.call(
                middleware.on_dead_lettered if dead else middleware.on_retry_scheduled, failure
            )

    # -- driving the core ---------------------------------------------------------

    def handle(self, message: Any) -> None:
        try:
            self.core.handle(message, self.clock.now())
        except TypeError:
            logger.warning("dispatcher: unexpected message %r", message)
            return
        self._run(self.core.take())
        if isinstance(message, m.Finished):
            self._keep_until_journaled(message.results)

    def _keep_until_journaled(self, results: list[m.Result]) -> None:
        """Outcomes outlive this incarnation until their events are durable.

        A commit that fails (a journal outage) restarts the Dispatcher, and
        recovery would take a job whose outcome was known but not yet
        journaled for one lost in a crash (dead-lettered, at most once).
        """
        kept = self.port.unjournaled
        keys = [(r[0], r[1]) for r in results]
        for key, result in zip(keys, results, strict=True):
            kept[key] = result

        def journaled() -> None:
            for key in keys:
                kept.pop(key, None)

        self.after_commit(journaled)  # the outcomes' events are staged by now

    def submit(
        self, items: list[tuple[JobSpec, float | None]], *, durable: bool
    ) -> tuple[list[tuple[str, bool]], int]:
        """Submit in the caller's thread: [(job id, existing?)] and the events' ticket."""

        def decide() -> tuple[list[tuple[str, bool]], int]:
            try:
                answer = self.core.submit(items, self.clock.now())
            finally:
                self._run(self.core.take())
            return answer, self.staged_seq

        try:
            return self.call(decide, durable=durable)
        except Refused as refused:
            raise refused.error from None

    def command(self, fn: Callable[[DispatchCore, float], T]) -> T:
        """Run a decision of the core in the caller's thread; returns once it is durable."""

        def decide() -> T:
            try:
                return fn(self.core, self.clock.now())
            finally:
                self._run(self.core.take())

        return self.call(decide, durable=True)

    def read(self, fn: Callable[[DispatchCore], Any]) -> Any:
        """Read the core's state in the caller's thread (nothing is persisted)."""
        return self.call(lambda: fn(self.core), durable=False)

    def _run(self, decision: fx.Decision) -> None:
        if decision.events:
            self.stage(*decision.events)
        for effect in decision.now:
            self._effect(effect)
        for effect in decision.durable:
            future = effect.to if isinstance(effect, fx.Answer | fx.Refuse) else None
            self.after_commit(_bind(self._effect, effect), future)
        self.board.set_idle(self.core.state.active == 0)

    def _effect(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.Tell):
            message = effect.message
            lease_valid = self._lease_valid
            if isinstance(message, m.Assign) and lease_valid is not None and not lease_valid():
                logger.warning("lease in doubt: %d jobs not granted", len(message.jobs))
                return
            if effect.to not in self.mailboxes and self.remote is not None:
                self.remote.tell(effect.to, message)  # a worker on another node
                return
            if isinstance(message, m.Assign):
                grant = Grant(message.jobs)
                grants = self._grants.setdefault(effect.to, collections.deque())
                while grants and grants[0].done:
                    grants.popleft()
                grants.append(grant)
                message = m.Assign(message.epoch, grant, message.headers)
                if self.board.cancelled:  # a retry after a timeout starts unflagged
                    self.board.unflag([job[0] for job in grant])
            self.mailboxes[effect.to].tell(message)
        elif isinstance(effect, fx.Recall) and effect.worker not in self.mailboxes:
            if self.remote is not None:
                self.remote.recall(effect.worker, effect.ids)  # the node answers Recalled
        elif isinstance(effect, fx.Recall):
            wanted = set(effect.ids)
            back = [i for g in self._grants.get(effect.worker, ()) for i in g.recall(wanted)]
            self.actor_ref.tell(m.Recalled(effect.worker, back))
        elif isinstance(effect, fx.Publish):
            self.board.publish(effect.outcomes)
        elif isinstance(effect, fx.Arm):
            self.mailboxes["scheduler"].tell(m.Schedule(effect.timers))
        elif isinstance(effect, fx.Answer):
            effect.to.set(effect.value)
        elif isinstance(effect, fx.Refuse):
            error = effect.error
            effect.to.set_exception((type(error), error, error.__traceback__))
        elif isinstance(effect, fx.Forget):
            self.board.forget(effect.ids)
        elif isinstance(effect, fx.FlagCancelled):
            self.board.flag_cancelled(effect.job_id)
        elif isinstance(effect, fx.ReplaceWorker):
            self.restart_worker(effect.worker, effect.reason)


class RemoteWorkers(Protocol):
    """Workers on other nodes, reached through a transport (see `actorq.transport`)."""

    def tell(self, worker: str, message: Any) -> None: ...

    def recall(self, worker: str, ids: list[str]) -> None: ...

    def replace(self, worker: str, reason: str) -> None: ...


def _bind(run: Callable[[fx.Effect], None], effect: fx.Effect) -> Callable[[], None]:
    return lambda: run(effect)


class DispatcherPort:
    """Where callers find the live Dispatcher incarnation, to call it in their own thread.

    A restarted Dispatcher attaches itself once it has recovered; callers
    arriving meanwhile wait for it (up to their timeout), as a message would
    wait in the Dispatcher's address.
    """

    def __init__(self, board: ResultBoard) -> None:
        self._board = board
        self._current: Dispatcher | None = None
        self._changed = threading.Condition()
        self.closed = False
        self.restarted = False  # a Dispatcher of this run has attached before
        # (job id, attempt) -> a worker's outcome not yet journaled, kept across
        # the Dispatcher's restarts in this process.
        self.unjournaled: dict[tuple[str, int], m.Result] = {}

    def take_unjournaled(self) -> list[m.Result]:
        kept, self.unjournaled = self.unjournaled, {}
        return list(kept.values())

    def attach(self, dispatcher: Dispatcher) -> None:
        with self._changed:
            if self.closed:
                return  # the system is stopping: no new calls
            self._current = dispatcher
            self.restarted = True  # the next incarnation finds this run's workers alive
            self._changed.notify_all()

    def detach(self, dispatcher: Dispatcher) -> None:
        with self._changed:
            if self._current is dispatcher:
                self._current = None

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._current = None
            self._changed.notify_all()

    def reopen(self) -> None:
        with self._changed:
            self.closed = False
            self.restarted = False

    def get(self, timeout: float) -> Dispatcher:
        current = self._current
        if current is not None:
            return current
        with self._changed:
            ok = self._changed.wait_for(
                lambda: (
                    self._current is not None or self.closed or self._board.unavailable is not None
                ),
                timeout,
            )
            if self._current is not None:
                return self._current
        if self._board.unavailable is not None:
            raise JournalUnavailable(f"the journal cannot be reached: {self._board.unavailable}")
        raise SystemNotRunning(
            "the actor system is not running" if ok else "the dispatcher did not recover in time"
        )
