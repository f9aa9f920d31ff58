"""`Simulation`: a user's ActorSystem on one thread, in virtual time, with faults.

One discrete-event loop (a heap of (virtual time, sequence, action)) drives
the production Dispatcher and DeadLetter classes and simulated workers (see
`shells.py`). Every random choice comes from a `random.Random` seeded from
`seed` and a purpose, so the same seed gives the same run, and the run's
trace hashes to the same `digest`. Invariants are checked as the run goes;
the first violation stops it and says how to replay it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import heapq
import itertools
import logging
import math
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from actorq import faults as fault_hooks
from actorq.actors.board import ResultBoard
from actorq.actors.deadletter import DeadLetter
from actorq.actors.dispatcher import Dispatcher, DispatcherPort
from actorq.core import messages as m
from actorq.core.dispatch import DispatchConfig
from actorq.core.events import (
    Cancelled,
    Expired,
    Failed,
    Requeued,
    Started,
    Submitted,
    Succeeded,
)
from actorq.core.job import JobStatus
from actorq.core.limits import RateLimit, RetryBudget
from actorq.core.schedules import (
    DEFAULT_CATCH_UP,
    DEFAULT_OVERLAP,
    DEFAULT_TZ,
    DEFAULT_WINDOW,
    ScheduleSpec,
)
from actorq.errors import UnknownTask
from actorq.job import JobHandle
from actorq.persistence.file import FileJournal
from actorq.persistence.journal import Journal, MemoryJournal
from actorq.sim import croncheck, vtime
from actorq.sim.plan import FaultPlan, Injector
from actorq.sim.report import INVARIANTS, Invariant, Sample, SimReport, percentile
from actorq.sim.shells import ActorShell, Mailbox, Model, Reply, SimClock, SimWorker
from actorq.supervision.policy import RestartPolicy

if TYPE_CHECKING:
    from actorq.system import ActorSystem

logger = logging.getLogger(__name__)

S = JobStatus
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
_OPTIONS = ("priority", "delay", "queue", "idempotency_key", "timeout", "policy", "kwargs")


class Violation(Exception):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


@dataclasses.dataclass(slots=True)
class _Command:
    """A decision of the core asked for from outside, as `ActorSystem._command` asks."""

    what: str
    fn: Callable[[Any, float], Any]
    ticket: int | None = None  # the journal seq its events reach, once it ran


class _TappedDispatcher(Dispatcher):
    """The production Dispatcher, letting the simulation see the events each turn staged."""

    tap: list[Any]
    on_refused: Callable[[str, Exception], None]

    def stage(self, *events: Any) -> None:
        self.tap.extend(events)
        super().stage(*events)

    def handle(self, message: Any) -> None:
        if not isinstance(message, _Command):
            super().handle(message)
            return
        # In production the caller's thread runs the decision under the actor's
        # lock (`Dispatcher.command`); here it is a turn of its own.
        try:
            message.fn(self.core, self.clock.now())
        except Exception as exc:  # a named error the caller would have got
            self.on_refused(message.what, exc)
        finally:
            self._run(self.core.take())
            message.ticket = self.staged_seq


@dataclasses.dataclass(slots=True)
class _Job:
    task: str
    submitted: float
    bound: int | None  # executions the policy allows, None if it is not bounded
    timeout: float | None
    acked: bool = False
    executions: int = 0
    allowance: int = 0  # re-runs a crash of the Dispatcher permits (at-least-once)
    status: str = "pending"
    finished: float | None = None


class Simulation:
    """Run `system`'s tasks and policies in virtual time; see docs/simulation.md."""

    def __init__(
        self,
        system: ActorSystem,
        *,
        seed: int = 0,
        start: datetime = DEFAULT_START,
        journal: str = "memory",
        turn_cost: float = 20e-6,
        liveness_bound: float = 3600.0,
        snapshot_every: float = 600.0,
        sample_every: float | None = None,
        keep_trace: bool = False,
        workers: int | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be a timezone-aware datetime")
        if journal not in ("memory", "file"):
            raise ValueError(f"journal must be 'memory' or 'file', not {journal!r}")
        self.system = system
        self.seed = seed
        self.start = start
        self.journal_kind = journal
        self.turn_cost = turn_cost
        self.liveness_bound = liveness_bound
        self.snapshot_every = snapshot_every
        self.sample_every = sample_every
        self.faults = FaultPlan()
        self.models: dict[str, Model] = {}
        self.replay_command = f"Simulation(system, seed={seed}).run(until=...)"
        self.label = ""
        self.t = 0.0
        self.turn: ActorShell | None = None
        self.board = ResultBoard()
        self.clock = SimClock(self)
        self.trace_lines: list[str] | None = [] if keep_trace else None
        self._base = start.timestamp()
        self._offset = 0.0
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._rngs: dict[str, random.Random] = {}
        self._digest = hashlib.sha256()
        self._workload: list[Callable[[], None]] = []
        self._ran = False
        self.fibers: list[vtime.Fiber] = []
        self._job_numbers = itertools.count(1)
        self._incarnations = itertools.count(1)
        self._epochs = itertools.count(1)
        self._timers: dict[float, list[tuple[float, str, str, Any]]] = {}
        self._stale: set[tuple[str, int]] = set()
        self._init_tallies()
        count = system.worker_count if workers is None else workers
        if count < 1:
            raise ValueError("a simulation needs at least one worker")
        self.workers = {f"worker-{i + 1}": SimWorker(self, f"worker-{i + 1}") for i in range(count)}
        self.policies: dict[str, RestartPolicy] = {}
        self.config = DispatchConfig(
            queues=system.queues,
            retention=system.retention,
            max_pending=system.max_pending,
            max_batch=system.prefetch,
            policy_for=self._policy_for,
            rate_limits=dict(system.rate_limits),
            retry_budgets=dict(system.retry_budgets),
        )
        self._init_cron()
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self.journal: Journal = MemoryJournal()
        self.dispatcher = ActorShell(self, "dispatcher", self._make_dispatcher)
        self.deadletter = ActorShell(self, "deadletter", self._make_deadletter)

    def _init_cron(self) -> None:
        # An instant still undecided this long after it came due, while the
        # Dispatcher is up, was skipped.
        self.cron_grace = 60.0
        self._cron = croncheck.CronCheck(
            lambda detail: self.violate(croncheck.NAME, detail), self.cron_grace
        )
        self._dispatcher_up: float | None = None
        self._pending: Violation | None = None
        self._asked: list[_Command] = []
        self._commands: list[tuple[float, str, Callable[[Any, float], Any]]] = [
            (0.0, f"schedule {spec.name}", functools.partial(_set_schedule, spec))
            for spec in self.system.declared_schedules.values()
        ]

    def _init_tallies(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.dead_ever: set[str] = set()
        self.expired: set[str] = set()
        self.attempts = 0
        self.finished = 0
        self.refused = 0
        self.worker_restarts = 0
        self.samples: list[Sample] = []
        self.invariants = {name: Invariant() for name in INVARIANTS}

    # -- time ---------------------------------------------------------------------------

    def wall(self) -> float:
        return self._base + self.t + self._offset

    def elapsed(self) -> float:
        return self.t

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Run `action` at virtual second `when` after the start (not before now)."""
        heapq.heappush(self._heap, (max(when, self.t), next(self._seq), action))

    def rng(self, purpose: str) -> random.Random:
        """The seeded random stream for one purpose (streams do not disturb each other)."""
        rng = self._rngs.get(purpose)
        if rng is None:
            rng = self._rngs[purpose] = random.Random(f"{self.seed}/{purpose}")
        return rng

    # -- workload -------------------------------------------------------------------------

    def model(
        self,
        task: str,
        *,
        service: Any = 0.0,
        fail: float = 0.0,
        error: str = "RuntimeError",
        value: Any = None,
    ) -> None:
        """Replace `task`'s handler by a model: service time (seconds or a function of an
        RNG), failure probability, the exception name it fails with, and its result."""
        self._check_task(task)
        self.models[task] = Model(service, fail, error, value)

    def submit(self, task: str, /, *args: Any, at: float = 0.0, **options: Any) -> None:
        """Submit a job at virtual second `at`, with `ActorSystem.submit`'s options."""
        self._check_submission(task, args, options)
        self._workload.append(lambda: self.at(at, lambda: self._submit(task, args, options)))

    def burst(
        self,
        task: str,
        count: int,
        *,
        at: float = 0.0,
        args: Callable[[int], Sequence[Any]] = lambda i: (i,),
        **options: Any,
    ) -> None:
        """`count` submissions at the same virtual instant."""
        self._check_submission(task, tuple(args(0)), options)
        for i in range(count):
            self.submit(task, *args(i), at=at, **options)

    def poisson(
        self,
        task: str,
        rate: float,
        *,
        start: float = 0.0,
        end: float,
        args: Callable[[int], Sequence[Any]] = lambda i: (i,),
        **options: Any,
    ) -> None:
        """Submissions arriving as a Poisson process of `rate` per second in [start, end)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._check_submission(task, tuple(args(0)), options)
        rng = self.rng(f"arrivals/{task}/{start}")
        counter = itertools.count()

        def arrive() -> None:
            self._submit(task, tuple(args(next(counter))), options)
            schedule(self.t)

        def schedule(after: float) -> None:
            when = after + rng.expovariate(rate)
            if when < end:
                self.at(when, arrive)

        self._workload.append(lambda: schedule(start))

    def _check_task(self, task: str) -> None:
        if task not in self.system.tasks:
            raise UnknownTask(task)

    def _check_submission(self, task: str, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"unknown submit options: {sorted(unknown)}")
        self._spec(task, args, options)  # raises the same named errors as submit

    def _spec(self, task: str, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        return self.system._spec(
            task,
            args,
            options.get("kwargs") or {},
            options.get("priority"),
            None,
            options.get("queue"),
            options.get("idempotency_key"),
            options.get("timeout"),
            options.get("policy"),
        )[0]

    def _submit(self, task: str, args: tuple[Any, ...], options: dict[str, Any]) -> str:
        spec = dataclasses.replace(
            self._spec(task, args, options), id=f"job-{next(self._job_numbers):06d}"
        )
        delay = options.get("delay")
        run_at = self.wall() + delay if delay else None
        policy = self.config.policy_for(spec.task, spec.policy)
        bound = policy.max_restarts + 1 if policy.within is None else None
        self.jobs[spec.id] = _Job(task, self.t, bound, spec.timeout)
        self.send("dispatcher", m.Submit([(spec, run_at)], Reply(self, [spec.id])))
        return str(spec.id)

    def _submit_from_handler(self, task: str, /, *args: Any, **options: Any) -> JobHandle:
        """`system.submit` while the simulation runs: a handler's follow-up job."""
        options.pop("durability", None)
        self._check_submission(task, args, options)
        return JobHandle(self.system, self._submit(task, args, options))

    # -- cron schedules and limits --------------------------------------------------------

    def schedule(
        self,
        name: str,
        cron: str,
        task: str,
        /,
        *args: Any,
        at: float = 0.0,
        tz: str = DEFAULT_TZ,
        kwargs: dict[str, Any] | None = None,
        catch_up: Any = DEFAULT_CATCH_UP,
        window: float = DEFAULT_WINDOW,
        overlap: Any = DEFAULT_OVERLAP,
        fall_back: Any = "once",
    ) -> None:
        """`ActorSystem.schedule` at virtual second `at` (schedules declared with
        `@system.cron` are set at the start, as `system.start()` sets them)."""
        spec = self.system._schedule_spec(
            name, cron, task, args, kwargs or {}, tz, catch_up, window, overlap, fall_back
        )
        self._commands.append((at, f"schedule {name}", functools.partial(_set_schedule, spec)))

    def pause_schedule(self, name: str, *, at: float, resume_at: float | None = None) -> None:
        """Pause schedule `name` at virtual second `at` (and resume it at `resume_at`)."""
        self._commands.append(
            (at, f"pause {name}", lambda core, now: core.cron.pause(name, True, now))
        )
        if resume_at is not None:
            self._commands.append(
                (resume_at, f"resume {name}", lambda core, now: core.cron.pause(name, False, now))
            )

    def trigger_schedule(self, name: str, *, at: float) -> None:
        """Fire schedule `name` by hand at virtual second `at`."""
        self._commands.append(
            (at, f"trigger {name}", lambda core, now: core.cron.trigger(name, now))
        )

    def schedules(self) -> dict[str, Any]:
        """The Dispatcher's schedules now, by name (`ScheduleInfo`); empty while it is down."""
        actor = self.dispatcher.actor
        if not isinstance(actor, Dispatcher):
            return {}
        return {info.name: info for info in actor.core.cron.infos()}

    def retry_budget(self, budget: RetryBudget | None, queue: str = "default") -> None:
        """Run `queue` under `budget` (None: no budget) instead of the system's own."""
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError("budget must be a RetryBudget")
        if queue not in self.config.queues:
            raise ValueError(f"unknown queue {queue!r}")
        if budget is None:
            self.config.retry_budgets.pop(queue, None)
        else:
            self.config.retry_budgets[queue] = budget

    def rate_limit(self, task: str, limit: RateLimit | None) -> None:
        """Run `task` under `limit` (None: no limit) instead of its own."""
        self._check_task(task)
        if limit is not None and not isinstance(limit, RateLimit):
            raise TypeError("limit must be a RateLimit")
        if limit is None:
            self.config.rate_limits.pop(task, None)
        else:
            self.config.rate_limits[task] = limit

    def _refused(self, what: str, error: Exception) -> None:
        self.trace(f"{what} refused: {type(error).__name__}: {error}")

    def policy(self, task: str, policy: RestartPolicy) -> None:
        """Run `task` under `policy` instead of its own (the "what if" of a comparison)."""
        self._check_task(task)
        if not isinstance(policy, RestartPolicy):
            raise TypeError("policy must be a RestartPolicy")
        self.policies[task] = policy

    def _policy_for(self, task: str, override: dict[str, Any] | None) -> RestartPolicy:
        if override is None and task in self.policies:
            return self.policies[task]
        return self.system._policy_for(task, override)

    def handler(self, task: str) -> Callable[..., Any]:
        fn = self.system._lookup(task)
        if fn is None:
            raise LookupError(f"no task registered as {task!r}")
        return fn

    def timeout_of(self, job_id: str) -> float | None:
        job = self.jobs.get(job_id)
        return None if job is None else job.timeout

    # -- the actors ------------------------------------------------------------------------

    def _make_dispatcher(self, journal: Journal) -> Dispatcher:
        mailboxes = {name: Mailbox(self, name) for name in (*self.workers, "scheduler")}
        mailboxes["deadletter"] = Mailbox(self, "deadletter")
        dispatcher = _TappedDispatcher(
            journal,
            clock=self.clock,
            board=self.board,
            mailboxes=cast(Any, mailboxes),
            workers=list(self.workers),
            restart_worker=lambda name, reason: self.send("supervisor", (name, reason)),
            config=self.config,
            port=DispatcherPort(self.board),
            rng=random.Random(self.rng("dispatcher").getrandbits(64)),
            snapshot_every=1 << 62,
            snapshot_interval=None,
        )
        dispatcher.tap = []
        dispatcher.on_refused = self._refused
        dispatcher.core.epoch = next(self._epochs)  # the class's counter is process-wide
        return dispatcher

    def _make_deadletter(self, journal: Journal) -> DeadLetter:
        return DeadLetter(
            journal,
            dispatcher=cast(Any, Mailbox(self, "dispatcher")),
            clock=self.clock,
            snapshot_every=1 << 62,
            snapshot_interval=None,
        )

    def next_incarnation(self) -> int:
        return next(self._incarnations)

    def send(self, to: str, message: Any) -> None:
        """Send from the current turn (it leaves when the turn ends) or from the loop."""
        turn = self.turn
        if turn is not None:
            turn.outbox.append((to, message))
        else:
            self.at(self.t, lambda: self.deliver(to, message))

    def deliver(self, to: str, message: Any) -> None:
        if to == "dispatcher":
            self.dispatcher.put(message)
        elif to == "deadletter":
            self.deadletter.put(message)
        elif to == "scheduler":
            self._arm(message.timers)
        elif to == "supervisor":
            name, reason = message
            self.trace(f"replace {name}: {reason}")
            self.kill_worker(name, lost=False)
        elif to == "client":
            self._answered(*message)
        else:
            worker = self.workers[to]
            self.trace_message(to, message)
            worker.receive(message)

    def _arm(self, timers: list[tuple[float, str, str, Any]]) -> None:
        """The Scheduler: timers due at the same instant reach the Dispatcher together."""
        wall = self.wall()
        for timer in timers:
            when = self.t + max(0.0, timer[0] - wall)
            batch = self._timers.get(when)
            if batch is None:
                batch = self._timers[when] = []
                self.at(when, functools.partial(self._fire, when))
            batch.append(timer)

    def _fire(self, when: float) -> None:
        timers = self._timers.pop(when, None)
        if timers:
            self.dispatcher.put(m.TimersFired(timers))

    def _answered(self, reply: Reply, ok: bool, value: Any) -> None:
        if not ok:
            self.refused += len(reply.ids)
            self.trace(f"refused {reply.ids}")
            return
        for job_id, _existing in value:
            job = self.jobs.get(job_id)
            if job is not None:
                job.acked = True
        self.trace(f"acknowledged {reply.ids}")

    def kill_worker(self, name: str | None, *, lost: bool) -> None:
        if name is None:
            name = self.rng("workers").choice(sorted(self.workers))
        worker = self.workers[name]
        if not worker.alive:
            return
        worker.stop(lost=lost)
        self.worker_restarts += 1
        self.at(self.t + 0.1, worker.start)  # the supervisor starts a new incarnation

    def schedule_restart(self, shell: ActorShell) -> None:
        delay = min(30.0, 0.5 * 2**shell.failures_in_row)
        self.at(self.t + delay, shell.recover)

    def recovery_cost(self, events: int) -> float:
        return 0.2 + events * 2e-6

    def crash_process(self, reason: str) -> None:
        """Everything in the process dies; the file journal is reopened from disk."""
        self.trace(f"process crash: {reason}")
        for shell in (self.dispatcher, self.deadletter):
            shell.crash(reason)
        for name in sorted(self.workers):
            self.kill_worker(name, lost=True)
        self.journal.close()
        assert self._directory is not None
        self.journal = FileJournal(self._directory.name, fsync="never")

    # -- what the shells report -------------------------------------------------------------

    def trace(self, line: str) -> None:
        text = f"{self.t!r} {line}\n"
        self._digest.update(text.encode())
        if self.trace_lines is not None:
            self.trace_lines.append(text)

    def trace_message(self, to: str, message: Any) -> None:
        if isinstance(message, m.Assign):
            detail = f"epoch={message.epoch} {[(j[0], j[1]) for j in message.jobs]}"
        elif isinstance(message, m.Finished):
            detail = f"{message.worker}#{message.incarnation} {[r[:3] for r in message.results]}"
        elif isinstance(message, m.Submit):
            detail = str([spec.id for spec, _ in message.jobs])
        elif isinstance(message, m.TimersFired):
            detail = str([(t[1], t[2]) for t in message.timers])
        elif isinstance(message, m.Ready | m.WorkerJoined | m.Reset | m.Recalled):
            detail = repr(message)
        elif isinstance(message, m.Bury):
            detail = message.job.id
        else:
            detail = ""
        self.trace(f"{to} <- {type(message).__name__} {detail}")

    def committed(self, writer: str, events: Sequence[Any]) -> None:
        self.trace(f"commit {writer} {events!r}")
        if writer != "dispatcher":
            return
        jobs = self.jobs
        cron_check = self._cron
        for event in events:
            if isinstance(event, Submitted) and event.spec.id not in jobs:
                self._fired_job(event)  # a cron fire: submitted by the Dispatcher itself
            elif type(event).__name__.startswith("Schedule"):
                self.invariants[croncheck.NAME].checks += 1
                try:
                    cron_check.committed(event)
                except Violation as exc:  # raised after the turn, not into the actor
                    self._pending = exc
            elif isinstance(event, Succeeded):
                self._terminal(jobs.get(event.id), "succeeded", event.at)
            elif isinstance(event, Failed) and event.retry_at is None:
                self.dead_ever.add(event.id)
                self._terminal(jobs.get(event.id), "dead", event.at)
            elif isinstance(event, Cancelled):
                self._terminal(jobs.get(event.id), "cancelled", event.at)
            elif isinstance(event, Expired):
                self.expired.update(event.ids)

    def _fired_job(self, event: Submitted) -> None:
        spec = event.spec
        policy = self.config.policy_for(spec.task, spec.policy)
        bound = policy.max_restarts + 1 if policy.within is None else None
        submitted = event.at - self._base - self._offset
        self.jobs[spec.id] = _Job(spec.task, submitted, bound, spec.timeout, acked=True)

    def _terminal(self, job: _Job | None, status: str, at: float) -> None:
        if job is not None:
            if job.finished is None:
                self.finished += 1
            job.status = status
            job.finished = at - self._base - self._offset

    def on_execution(self, job_id: str, worker: str) -> None:
        self.attempts += 1
        job = self.jobs.get(job_id)
        if job is None:
            return
        job.executions += 1
        if job.bound is not None:
            inv = self.invariants["attempts_within_policy"]
            inv.checks += 1
            if job.executions > job.bound + job.allowance:
                self.violate(
                    "attempts_within_policy",
                    f"{job_id} ({job.task}) started for the {job.executions}th time on {worker};"
                    f" its policy allows {job.bound}, plus {job.allowance} re-run(s) after"
                    " Dispatcher crashes",
                )

    def before_turn(self, shell: ActorShell, message: Any) -> None:
        actor = shell.actor
        if shell is self.dispatcher and isinstance(actor, _TappedDispatcher):
            actor.tap.clear()
            self._stale = set()
            if isinstance(message, m.Finished):
                worker = self.workers.get(message.worker)
                live = worker.incarnation if worker is not None and worker.alive else None
                if message.incarnation != live:
                    self._stale = {(r[0], r[1]) for r in message.results}
        elif shell is self.deadletter and isinstance(message, m.Bury):
            inv = self.invariants["dead_letters_balanced"]
            inv.checks += 1
            if message.job.id not in self.dead_ever:
                self.violate(
                    "dead_letters_balanced",
                    f"{message.job.id} reached the dead letters but was never durably dead",
                )

    def after_turn(self, shell: ActorShell, message: Any) -> None:
        if not self._stale or shell is not self.dispatcher:
            return
        actor = cast(_TappedDispatcher, shell.actor)
        inv = self.invariants["no_fenced_result"]
        inv.checks += 1
        for event in actor.tap:
            if isinstance(event, Succeeded | Failed) and (event.id, event.attempt) in self._stale:
                assert isinstance(message, m.Finished)
                self.violate(
                    "no_fenced_result",
                    f"{type(event).__name__} of {event.id} attempt {event.attempt} from"
                    f" {message.worker}#{message.incarnation}, an incarnation that was replaced",
                )

    def on_actor_crash(self, shell: ActorShell, actor: Any, reason: str) -> None:
        self.trace(f"{shell.name} crashed: {reason}")
        if shell is not self.dispatcher:
            return
        self._dispatcher_up = None
        state = actor.core.state
        affected = {job.id for job in state.running()}
        for event in [*actor._staged, *shell.lost_batch]:
            if isinstance(event, Started | Requeued):
                affected.update(event.ids)
            elif isinstance(event, Succeeded | Failed):
                affected.add(event.id)
        for job_id in affected:
            job = self.jobs.get(job_id)
            if job is not None:
                job.allowance += 1

    def after_recovery(self, shell: ActorShell) -> None:
        if shell is not self.dispatcher:
            return
        actor = cast(Dispatcher, shell.actor)
        self._dispatcher_up = self.wall()
        if self._cron.watches:
            self.invariants[croncheck.NAME].checks += 1
            self._cron.recovered(actor.core.state.schedules)
        # A caller whose command was cut by the crash asks again, as one
        # whose `system.schedule(...)` raised would.
        again = [c for c in self._asked if c.ticket is not None and c.ticket > actor.seq]
        self._asked = [c for c in self._asked if c.ticket is None]
        for command in again:
            command.ticket = None
            self._asked.append(command)
            self.dispatcher.put(command)
        known = actor.core.state.jobs
        inv = self.invariants["no_acknowledged_loss"]
        inv.checks += 1
        for job_id, job in self.jobs.items():
            if job.acked and job_id not in known and job_id not in self.expired:
                self.violate(
                    "no_acknowledged_loss",
                    f"{job_id} was acknowledged at {job.submitted:.3f}s and is gone after"
                    f" the Dispatcher recovered",
                )

    def violate(self, name: str, detail: str) -> None:
        inv = self.invariants[name]
        inv.held = False
        inv.first_violation = f"at {self.t:.6f}s: {detail}"
        raise Violation(name, detail)

    # -- running ----------------------------------------------------------------------------

    def run(self, until: float) -> SimReport:
        """Run to virtual second `until` (or the first invariant violation)."""
        if self._ran:
            raise RuntimeError("a Simulation runs once; make a new one to run again")
        if not until > 0:
            raise ValueError("until must be a positive number of seconds")
        self._ran = True
        file_journal = self.journal_kind == "file"
        if file_journal:
            self._directory = tempfile.TemporaryDirectory(prefix="actorq-sim-")
            self.journal = FileJournal(self._directory.name, fsync="never")
        injector = Injector(self.faults, self.elapsed, self.rng("faults"), file_journal)
        fault_hooks.install(injector)
        vtime.activate(self)
        # Handlers (and Task.submit) that submit follow-up jobs reach the simulation.
        setattr(self.system, "submit", self._submit_from_handler)  # noqa: B010
        violation: Violation | None = None
        steps = 0
        try:
            self._setup(until)
            heap = self._heap
            cron_check = self._cron
            # A clock jump moves instants against the timers already armed.
            judge_cron = not self.faults.clock_jumps
            while heap and heap[0][0] <= until:
                when, _, action = heapq.heappop(heap)
                self.t = when
                action()
                steps += 1
                if self._pending is not None:
                    raise self._pending
                if judge_cron and cron_check.earliest is not None:
                    cron_check.step(self.wall(), self._dispatcher_up)
            self.t = until
            self._final_checks(until)
        except Violation as exc:
            violation = exc
        finally:
            self._stop_fibers()
            del self.system.submit
            fault_hooks.install(None)
            vtime.activate(None)
            self.journal.close()
            if self._directory is not None:
                self._directory.cleanup()
        if violation is not None:
            print(
                f"invariant {violation.name} violated: "
                f"{self.invariants[violation.name].first_violation}\n"
                f"seed {self.seed}; replay with: {self.replay_command}",
                file=sys.stderr,
            )
        return self._report(until, steps, injector)

    def _setup(self, until: float) -> None:
        self.trace(f"start {self.start.isoformat()} seed {self.seed}")
        self.at(0.0, self.deadletter.recover)
        self.at(0.0, self.dispatcher.recover)
        for worker in self.workers.values():
            self.at(0.0, worker.start)
        for action in self._workload:
            action()
        for when, what, fn in self._commands:
            command = _Command(what, fn)
            self._asked.append(command)
            self.at(when, lambda command=command: self.dispatcher.put(command))  # type: ignore[misc]
        plan = self.faults
        for t in plan.dispatcher_crash_at:
            self.at(t, lambda: self.dispatcher.crash("scheduled crash"))
        crash_rng = self.rng("dispatcher-crashes")
        for every, window in plan.dispatcher_crash_every:
            t = window.start
            while True:
                t += crash_rng.expovariate(1.0 / every)
                if t >= min(window.end, until):
                    break
                self.at(t, lambda: self.dispatcher.crash("random crash"))
        for t, name in plan.worker_crash_at:
            self.at(t, functools.partial(self.kill_worker, name, lost=True))
        for t, by in plan.clock_jumps:
            self.at(t, functools.partial(self._jump, by))
        every = self.sample_every or max(until / 240, 1e-3)
        n = 0
        while n * every <= until:
            self.at(n * every, self._sample)
            n += 1
        if self.snapshot_every:
            k = 1
            while k * self.snapshot_every < until:
                self.at(k * self.snapshot_every, self.dispatcher.snapshot)
                self.at(k * self.snapshot_every, self.deadletter.snapshot)
                k += 1

    def _jump(self, by: float) -> None:
        self._offset += by
        self.trace(f"clock jumps by {by}")

    def _sample(self) -> None:
        actor = self.dispatcher.actor
        if isinstance(actor, Dispatcher):
            counts = actor.core.state.counts
            queued, running = counts[S.QUEUED], counts[S.RUNNING]
            waiting = counts[S.SCHEDULED] + counts[S.RETRYING]
        elif self.samples:
            last = self.samples[-1]
            queued, running, waiting = last.queued, last.running, last.waiting
        else:
            queued = running = waiting = 0
        self.samples.append(
            Sample(self.t, queued, running, waiting, len(self.jobs), self.attempts, self.finished)
        )

    def _stop_fibers(self) -> None:
        """Unwind the handlers still running (or stalled in replaced workers) at the end."""
        fibers, self.fibers = self.fibers, []
        for fiber in fibers:
            fiber.kill()

    def _final_checks(self, until: float) -> None:
        dispatcher = self.dispatcher.actor
        deadletter = self.deadletter.actor
        judged = until >= self.faults.quiet_after + self.liveness_bound
        # A hand-off lost in a crash of the DeadLetter is sent again by the sweep,
        # once the job is past its retention: that is the hand-off's own bound.
        handoff_bound = max(self.liveness_bound, self.config.retention + 120.0)
        if isinstance(dispatcher, Dispatcher) and isinstance(deadletter, DeadLetter):
            inv = self.invariants["dead_letters_balanced"]
            inv.checks += 1
            jobs = dispatcher.core.state.jobs
            for job_id, job in jobs.items():
                if job.status is not S.DEAD:
                    continue
                settled = self.t - (job.finished_at or 0.0) + self._base + self._offset
                if not job.handoff_pending and job_id not in deadletter.entries:
                    self.violate("dead_letters_balanced", f"{job_id} is dead but not kept")
                if judged and job.handoff_pending and settled > handoff_bound:
                    self.violate(
                        "dead_letters_balanced",
                        f"{job_id} died {settled:.0f}s ago and never reached the dead letters",
                    )
            for job_id in deadletter.entries:
                if job_id not in self.dead_ever:
                    self.violate("dead_letters_balanced", f"{job_id} is kept but never died")
            if judged:
                self._check_liveness(until)
        if self.invariants["dead_letters_balanced"].held is None:
            self.invariants["dead_letters_balanced"].held = (
                True if self.invariants["dead_letters_balanced"].checks else None
            )
        for name in (
            "no_acknowledged_loss",
            "attempts_within_policy",
            "no_fenced_result",
            croncheck.NAME,
        ):
            inv = self.invariants[name]
            if inv.held is None and inv.checks:
                inv.held = True

    def _check_liveness(self, until: float) -> None:
        inv = self.invariants["liveness"]
        quiet = self.faults.quiet_after
        for job_id, job in self.jobs.items():
            if not job.acked:
                continue
            deadline = max(job.submitted, quiet) + self.liveness_bound
            if deadline > until:
                continue
            inv.checks += 1
            if job.finished is None:
                self.violate(
                    "liveness",
                    f"{job_id} ({job.task}), submitted at {job.submitted:.3f}s, is not finished"
                    f" {self.liveness_bound:.0f}s after the faults stopped",
                )
        inv.held = True

    def _report(self, until: float, steps: int, injector: Injector) -> SimReport:
        jobs = list(self.jobs.values())
        histogram: dict[str, dict[int, int]] = {}
        for job in jobs:
            if job.finished is not None:
                per_task = histogram.setdefault(job.task, {})
                per_task[job.executions] = per_task.get(job.executions, 0) + 1
        successes = [
            j.finished - j.submitted
            for j in jobs
            if j.status == "succeeded" and j.finished is not None
        ]
        finished = [j.finished for j in jobs if j.finished is not None]
        deadletter = self.deadletter.actor
        kinds = Counter(kind for _, _, kind in injector.injected)
        return SimReport(
            seed=self.seed,
            until=until,
            start=self.start.isoformat(),
            digest=self._digest.hexdigest(),
            steps=steps,
            invariants=self.invariants,
            jobs=len(jobs),
            acknowledged=sum(1 for j in jobs if j.acked),
            succeeded=sum(1 for j in jobs if j.status == "succeeded"),
            dead=sum(1 for j in jobs if j.status == "dead"),
            cancelled=sum(1 for j in jobs if j.status == "cancelled"),
            unfinished=sum(1 for j in jobs if j.finished is None),
            attempts=self.attempts,
            attempts_histogram={k: dict(sorted(v.items())) for k, v in sorted(histogram.items())},
            finished_at=max(finished) if finished else None,
            time_to_success={
                "p50": percentile(successes, 50),
                "p90": percentile(successes, 90),
                "p99": percentile(successes, 99),
                "max": max(successes) if successes else None,
            },
            dead_letters=len(deadletter.entries) if isinstance(deadletter, DeadLetter) else 0,
            dispatcher_restarts=self.dispatcher.restarts,
            worker_restarts=self.worker_restarts,
            faults_injected=dict(sorted(kinds.items())),
            samples=self.samples,
            success_times=successes,
            replay=self.replay_command,
            label=self.label,
        )


def _set_schedule(spec: ScheduleSpec, core: Any, now: float) -> None:
    core.cron.set(spec, now)


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '6h', '2d' -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    text = text.strip()
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use 90, 90s, 15m, 6h or 2d)") from None
    if not value > 0 or math.isinf(value):
        raise ValueError(f"a duration must be positive and finite, not {text!r}")
    return value
