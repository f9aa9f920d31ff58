"""How the simulation runs the product's actors on its single loop.

The Dispatcher and the DeadLetter are the production classes
(`actorq.actors.dispatcher.Dispatcher`, `actorq.actors.deadletter.DeadLetter`),
constructed but never started as pykka threads: an `ActorShell` takes one
message at a time from the actor's own inbox and calls its `on_receive`, as
pykka's loop would, so group commit, effects, recovery and the decision core
are the code that runs in production. What the actor sends during a turn
leaves when the turn ends, after the journal's latency; a crash before then
loses what was sent after the commit began.

Workers are simulated (`SimWorker`): they take jobs from the same `Grant`
objects as production workers and report `Finished` the same way, but run
each handler on a `Fiber` (or a model) so that its time is virtual.
"""

from __future__ import annotations

import builtins
import collections
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actorq.clock import TimerHandle
from actorq.context import JobContext, _current
from actorq.core import messages as m
from actorq.core.job import pack, unpack
from actorq.errors import JournalUnavailable
from actorq.faults import SimulatedCrash
from actorq.persistence.journal import Journal, Snapshot
from actorq.persistence.persistent import PersistentActor
from actorq.sim import vtime
from actorq.sim.plan import draw
from actorq.supervision.policy import exception_lineage

if TYPE_CHECKING:
    from actorq.sim.simulation import Simulation


class SimClock:
    """The `Clock` the simulated actors read: virtual wall time, timers on the loop."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def now(self) -> float:
        return self.sim.wall()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        sim = self.sim

        def fire() -> None:
            if not handle.cancelled:
                callback()  # in production: a message to the actor (a linger's flush)
                sim.dispatcher.kick()
                sim.deadletter.kick()

        sim.at(sim.t + max(0.0, when - sim.wall()), fire)
        return handle

    def close(self) -> None:
        """Nothing to stop."""


class Mailbox:
    """Stands where production has an `Address`: `tell` hands the message to the loop."""

    __slots__ = ("name", "sim")

    def __init__(self, sim: Simulation, name: str) -> None:
        self.sim = sim
        self.name = name

    def tell(self, message: Any) -> None:
        self.sim.send(self.name, message)


class Reply:
    """A submitter's reply slot: set once the Dispatcher's answer leaves its turn."""

    __slots__ = ("ids", "sim")

    def __init__(self, sim: Simulation, ids: list[str]) -> None:
        self.sim = sim
        self.ids = ids

    def set(self, value: Any = None) -> None:
        self.sim.send("client", (self, True, value))

    def set_exception(self, exc_info: Any = None) -> None:
        self.sim.send("client", (self, False, exc_info))


class MeteredJournal:
    """The real journal, with the latency and the commit boundary the shell needs to know."""

    def __init__(self, inner: Journal, shell: ActorShell) -> None:
        self.inner = inner
        self.shell = shell

    def append(self, persistence_id: str, events: Sequence[Any], *, after_seq: int) -> None:
        shell = self.shell
        if shell.commit_mark is None:
            shell.commit_mark = len(shell.outbox)
        shell.latency += draw(shell.sim.faults.journal_latency, shell.sim.rng("journal"))
        try:
            self.inner.append(persistence_id, events, after_seq=after_seq)
        except BaseException:
            shell.lost_batch = list(events)
            raise
        shell.sim.committed(shell.name, events)

    def replay(self, persistence_id: str, *, after_seq: int = 0) -> Any:
        return self.inner.replay(persistence_id, after_seq=after_seq)

    def last_seq(self, persistence_id: str) -> int:
        return self.inner.last_seq(persistence_id)

    def save_snapshot(self, persistence_id: str, snapshot: Snapshot) -> None:
        self.inner.save_snapshot(persistence_id, snapshot)

    def load_snapshot(self, persistence_id: str) -> Snapshot | None:
        return self.inner.load_snapshot(persistence_id)

    def close(self) -> None:
        self.inner.close()


class ActorShell:
    """Drives one persistent actor, across its crashes and recoveries, on the loop."""

    def __init__(
        self, sim: Simulation, name: str, factory: Callable[[Journal], PersistentActor]
    ) -> None:
        self.sim = sim
        self.name = name
        self.factory = factory
        self.actor: PersistentActor | None = None
        self.waiting: collections.deque[Any] = collections.deque()  # while down
        self.busy_until = 0.0
        self.scheduled = False
        self.generation = 0
        self.outbox: list[tuple[str, Any]] = []
        self.commit_mark: int | None = None
        self.latency = 0.0
        self.lost_batch: list[Any] = []
        self.restarts = 0
        self.failures_in_row = 0

    # -- messages ------------------------------------------------------------------

    def put(self, message: Any) -> None:
        actor = self.actor
        if actor is None:
            self.waiting.append(message)  # an Address holds messages for the next incarnation
            return
        actor.actor_ref.tell(message)
        self.kick()

    def kick(self) -> None:
        if self.scheduled or self.actor is None:
            return
        self.scheduled = True
        generation = self.generation
        self.sim.at(max(self.sim.t, self.busy_until), lambda: self._turn(generation))

    def _turn(self, generation: int) -> None:
        if generation != self.generation:
            return
        self.scheduled = False
        actor = self.actor
        if actor is None or actor.actor_inbox.empty():
            return
        message = actor.actor_inbox.get().message
        self.sim.trace_message(self.name, message)
        self._begin()
        self.sim.before_turn(self, message)
        error: BaseException | None = None
        try:
            actor.on_receive(message)
        except BaseException as exc:  # a failed commit, or a crash at a fault point
            error = exc
        if error is None:
            self.sim.after_turn(self, message)
        self._end(error)

    def _begin(self) -> None:
        self.sim.turn = self
        self.outbox = []
        self.commit_mark = None
        self.latency = 0.0
        self.lost_batch = []

    def _end(self, error: BaseException | None, cost: float | None = None) -> None:
        sim = self.sim
        sim.turn = None
        end = sim.t + (sim.turn_cost if cost is None else cost) + self.latency
        self.busy_until = end
        out, mark = self.outbox, self.commit_mark
        if error is not None:
            if isinstance(error, SimulatedCrash) and mark is not None:
                out = out[:mark]  # the process died at the commit: nothing after it left
            self._deliver(out)
            reason = f"{type(error).__name__}: {error}"
            if isinstance(error, SimulatedCrash) and sim.journal_kind == "file":
                sim.crash_process(reason)  # a torn write: the whole process died
            else:
                self.crash(reason, error)
            return
        generation = self.generation

        def deliver() -> None:
            # A crash while the commit was under way: only what was sent before it left.
            self._deliver(out if generation == self.generation or mark is None else out[:mark])

        if out:
            sim.at(end, deliver)
        if self.actor is not None and not self.actor.actor_inbox.empty():
            self.kick()

    def _deliver(self, out: list[tuple[str, Any]]) -> None:
        for to, message in out:
            self.sim.deliver(to, message)

    # -- crashes and recovery ---------------------------------------------------------

    def crash(self, reason: str, error: BaseException | None = None) -> None:
        actor = self.actor
        if actor is None:
            return
        self.sim.on_actor_crash(self, actor, reason)
        self.generation += 1
        self.scheduled = False
        if error is not None and not isinstance(error, SimulatedCrash):
            actor.on_failure(type(error), error, error.__traceback__)
        while not actor.actor_inbox.empty():
            self.waiting.append(actor.actor_inbox.get().message)
        self.actor = None
        self.restarts += 1
        self.sim.schedule_restart(self)

    def recover(self) -> None:
        """Start a new incarnation: rebuild its state from the journal, as on_start does."""
        sim = self.sim
        actor = self.factory(MeteredJournal(sim.journal, self))
        actor._thread_ident = threading.get_ident()
        self._begin()
        try:
            actor._recover()
            actor._snapshot_at = sim.wall()
            actor.on_recovered()
            actor.live = True
            actor.flush()
        except (JournalUnavailable, SimulatedCrash) as exc:
            sim.turn = None
            self.failures_in_row += 1
            sim.trace(f"{self.name} recovery failed: {exc}")
            if isinstance(exc, SimulatedCrash) and sim.journal_kind == "file":
                sim.crash_process(str(exc))  # a torn write: the whole process died
            sim.schedule_restart(self)
            return
        self.failures_in_row = 0
        self.actor = actor
        while self.waiting:
            actor.actor_ref.tell(self.waiting.popleft())
        sim.trace(f"{self.name} recovered {actor.recovered_events} events at seq {actor.seq}")
        sim.after_recovery(self)
        self._end(None, cost=sim.recovery_cost(actor.recovered_events))
        self.kick()

    def snapshot(self) -> None:
        actor = self.actor
        if actor is None or self.sim.t < self.busy_until or not actor.actor_inbox.empty():
            return  # taken at the next quiet moment
        self._begin()
        error: BaseException | None = None
        try:
            actor.snapshot(wait=True)
        except BaseException as exc:
            error = exc
        self._end(error)


@dataclass(slots=True)
class Model:
    """A task's handler replaced by a model: service time, failure probability, result."""

    service: Any = 0.0  # seconds, or a function of the RNG
    fail: float = 0.0
    error: str = "RuntimeError"
    value: Any = None


class _Run:
    __slots__ = ("attempt", "epoch", "fiber", "incarnation", "job_id", "slow", "started", "task")

    def __init__(self, job: tuple[str, int, str, bytes], incarnation: int, epoch: int) -> None:
        self.job_id, self.attempt, self.task, _ = job
        self.incarnation = incarnation
        self.epoch = epoch
        self.fiber: vtime.Fiber | None = None
        self.slow = False
        self.started = 0.0


def lineage_of(name: str) -> tuple[str, ...]:
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return exception_lineage(cls())
    return (name, "Exception", "BaseException")


class SimWorker:
    """One worker address; its incarnations run one job at a time."""

    def __init__(self, sim: Simulation, name: str) -> None:
        self.sim = sim
        self.name = name
        self.incarnation = 0
        self.epoch = 0
        self.alive = False
        self.grants: collections.deque[Sequence[tuple[str, int, str, bytes]]] = collections.deque()
        self.buffer: list[Any] = []
        self.run: _Run | None = None

    def start(self) -> None:
        self.incarnation = self.sim.next_incarnation()
        self.epoch = 0
        self.alive = True
        self.sim.send("dispatcher", m.WorkerJoined(self.name, self.incarnation))
        buffered, self.buffer = self.buffer, []
        for message in buffered:
            self.receive(message)

    def receive(self, message: Any) -> None:
        if not self.alive:
            self.buffer.append(message)
            return
        if isinstance(message, m.Assign):
            if message.epoch == self.epoch:
                self.grants.append(message.jobs)
                self._next()
        elif isinstance(message, m.Reset):
            self.epoch = message.epoch
            self.sim.send("dispatcher", m.Ready(self.name, self.incarnation, self.epoch, 1))

    def stop(self, *, lost: bool) -> None:
        """This incarnation ends; a slow one's job may still report late (to be fenced)."""
        if not self.alive:
            return
        self.alive = False
        self.grants.clear()
        run, self.run = self.run, None
        if run is not None and (lost or not run.slow) and run.fiber is not None:
            run.fiber.kill()
        if run is not None and lost:
            run.slow = False  # a crashed process sends nothing more

    def _next(self) -> None:
        while self.run is None and self.alive and self.grants:
            grant = self.grants[0]
            take = getattr(grant, "take", None)
            job = take() if take is not None else None
            if job is None:
                self.grants.popleft()
                continue
            self._start(job)

    def _start(self, job: tuple[str, int, str, bytes]) -> None:
        sim = self.sim
        run = _Run(job, self.incarnation, self.epoch)
        run.started = sim.t
        self.run = run
        sim.on_execution(run.job_id, self.name)
        rng = sim.rng("handler")
        extra = 0.0
        error: str | None = None
        crash = hang = False
        for fault in sim.faults.execution_faults(run.task, sim.t):
            if rng.random() >= fault.p:
                continue
            if fault.kind == "error":
                error = fault.error
            elif fault.kind == "latency":
                extra += draw(fault.amount, rng)
            elif fault.kind == "crash":
                crash = True
            elif fault.kind == "hang" and sim.timeout_of(run.job_id) is not None:
                hang = True
            elif fault.kind == "slow":
                run.slow = True
                extra += draw(fault.amount, rng)
        if hang:
            sim.trace(f"{self.name} hangs on {run.job_id}")
            return  # never returns: the Dispatcher's timeout replaces this worker
        model = sim.models.get(run.task)
        if model is not None:
            seconds = draw(model.service, rng)
            if error is None and model.fail and rng.random() < model.fail:
                error = model.error
            outcome = self._outcome(model.value, error)
            self._after(run, sim.t + seconds + extra, outcome, crash)
            return
        fiber = vtime.Fiber(lambda: self._call(run, job[3]))
        run.fiber = fiber
        sim.fibers = [f for f in sim.fibers if not f.done]
        sim.fibers.append(fiber)
        self._step(run, extra, error, crash)

    def _step(self, run: _Run, extra: float, error: str | None, crash: bool) -> None:
        fiber = run.fiber
        assert fiber is not None
        if run is not self.run and not run.slow:
            return
        if not fiber.resume():
            self.sim.at(self.sim.t + fiber.wake_in, lambda: self._step(run, extra, error, crash))
            return
        if error is not None:
            outcome = self._outcome(None, error)
        elif fiber.error is not None:
            exc = fiber.error
            outcome = (False, None, f"{type(exc).__name__}: {exc}", exception_lineage(exc))
        else:
            outcome = self._encoded(fiber.value)
        self._after(run, self.sim.t + extra, outcome, crash)

    def _call(self, run: _Run, payload: bytes) -> Any:
        fn = self.sim.handler(run.task)
        token = _current.set(JobContext(run.job_id, run.attempt, run.task, self.sim.board))
        try:
            args, kwargs = unpack(payload)
            result = fn(*args, **kwargs)
            if hasattr(result, "__await__"):
                result = vtime.run_async(result)
            return result
        finally:
            _current.reset(token)

    @staticmethod
    def _encoded(value: Any) -> tuple[bool, bytes | None, str | None, tuple[str, ...]]:
        try:
            return True, pack(value), None, ()
        except (TypeError, ValueError, OverflowError) as exc:
            error = f"result cannot be encoded with msgpack: {exc}"
            return False, None, error, ("actorq.ResultNotSerializable",)

    def _outcome(
        self, value: Any, error: str | None
    ) -> tuple[bool, bytes | None, str | None, tuple[str, ...]]:
        if error is None:
            return self._encoded(value)
        return False, None, f"{error}: injected", lineage_of(error)

    def _after(
        self,
        run: _Run,
        done_at: float,
        outcome: tuple[bool, bytes | None, str | None, tuple[str, ...]],
        crash: bool,
    ) -> None:
        sim = self.sim
        if crash:
            at = run.started + sim.rng("handler").uniform(0.0, max(done_at - run.started, 0.0))
            sim.at(at, lambda: self._crash_during(run))
            return
        sim.at(done_at, lambda: self._report(run, outcome, done_at - run.started))

    def _crash_during(self, run: _Run) -> None:
        if run is self.run:
            self.sim.trace(f"{self.name} crashes running {run.job_id}")
            self.sim.kill_worker(self.name, lost=True)

    def _report(
        self,
        run: _Run,
        outcome: tuple[bool, bytes | None, str | None, tuple[str, ...]],
        seconds: float,
    ) -> None:
        ok, value, error, lineage = outcome
        result = (run.job_id, run.attempt, ok, value, error, lineage, seconds)
        if run is not self.run:
            if run.slow:  # a replaced worker's late answer: the Dispatcher must fence it
                self.sim.send(
                    "dispatcher", m.Finished(self.name, run.incarnation, run.epoch, [result])
                )
            return
        self.run = None
        self.sim.send("dispatcher", m.Finished(self.name, run.incarnation, run.epoch, [result]))
        self._next()
