"""The Dispatcher's decisions: accept or refuse, which worker, retry or give up, fence.

`DispatchCore` owns the job state and what the Dispatcher knows of its
workers. Every method takes the current time; randomness comes from the
`rng` it was given. A method applies the events it decides on to the state
at once (so the next decision sees them) and records them, with the effects
to run, in a `Decision` that the shell collects with `take()`.

Work goes to workers by slots and by a time budget. A worker runs one job
at a time; it is given a batch only while the estimated run time of what it
holds is under `batch_budget`, and a task whose run time is not yet known
travels alone. So quick jobs travel in batches (one message for many jobs),
a slow job never has other jobs queued behind it on its worker, and the
priority order is decided when a worker has room, not long before.

Recurring schedules are decided by `firing.CronDesk`, held here as `cron`:
their timers come back through `TimersFired` like any other.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actorq.core import effects as fx
from actorq.core import messages as m
from actorq.core.events import (
    BecameDue,
    Cancelled,
    CancelRequested,
    Expired,
    Failed,
    HandedOff,
    Requeued,
    Started,
    Submitted,
    Succeeded,
)
from actorq.core.firing import TIMER as CRON_TIMER
from actorq.core.firing import CronDesk
from actorq.core.job import JobSpec, JobStatus
from actorq.core.limits import Limits, RateLimit, RetryBudget
from actorq.core.state import DispatcherState, JobRecord
from actorq.errors import Backpressure, IdempotencyConflict
from actorq.supervision.policy import RestartPolicy, exception_lineage

S = JobStatus

# Lineages recorded for failures that are not exceptions raised by a handler.
WORKER_LOST = ("actorq.WorkerLost", "Exception", "BaseException")
TIMED_OUT = exception_lineage(TimeoutError())
_STALLED = re.compile(r"stalled (\d+) times?\)$")


class Refused(Exception):
    """A submission the core will not take; the shell raises `error` to the caller."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class DispatchConfig:
    queues: tuple[str, ...] = ("default",)
    retention: float = 3600.0
    max_pending: int = 1_000_000
    max_batch: int = 32
    # A worker is given more jobs only while what it holds is estimated to run
    # for less than this; 2 ms keeps a batch message's cost (~20 us) small
    # against the work it carries, and bounds how long a newly arrived
    # higher-priority job can wait behind work already handed out.
    batch_budget: float = 0.002
    # A worker that has made no progress for this long while other workers sit
    # idle gives back the jobs it has not started (a job ran far longer than
    # its task's estimate): 10 budgets, so a batch running to plan is never
    # disturbed.
    recall_after: float = 0.02
    # A job whose worker died under it this many times more goes to the dead
    # letters whatever its policy says: it is likely what kills the workers
    # (BullMQ's maxStalledCount, 1 by default there too).
    max_stalled: int = 1
    policy_for: Callable[[str, dict[str, Any] | None], RestartPolicy] = lambda task, override: (
        RestartPolicy.from_dict(override) if override else RestartPolicy()
    )
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)  # task -> limit
    retry_budgets: dict[str, RetryBudget] = field(default_factory=dict)  # queue -> budget
    node: str | None = None  # recorded with each start, for the attempts' history


@dataclass
class WorkerSlot:
    """What the core knows of one worker.

    Credits are derived, not counted: a worker that announced itself may hold
    jobs while their estimated run time is under the budget, and every job
    assigned and not yet reported is held. A repeated or late Ready can
    therefore never over-fill a worker.
    """

    name: str
    incarnation: int = -1
    ready: bool = False
    assigned: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> attempt, estimate
    load: float = 0.0  # the estimated run time of what it holds
    progress_at: float = 0.0  # when it was last given work or last reported
    recalling: bool = False
    replacing: bool = False  # its running job timed out; a new incarnation is on the way


class DispatchCore:
    def __init__(
        self,
        config: DispatchConfig,
        workers: list[str],
        *,
        epoch: int,
        rng: random.Random,
        state: DispatcherState | None = None,
    ) -> None:
        self.config = config
        self.state = state or DispatcherState()
        self.workers = {name: WorkerSlot(name) for name in workers}
        self.epoch = epoch
        self.rng = rng
        self.draining = False
        self.paused = False
        self.estimates: dict[str, float] = {}  # task -> run time, rising fast, falling slowly
        self._drain_waiters: list[m.Reply] = []
        self._sweep_armed = False
        self.limits = Limits(config.rate_limits, config.retry_budgets)
        self._out = fx.Decision()
        self.cron = CronDesk(self)

    # -- the shell's interface ------------------------------------------------

    def take(self) -> fx.Decision:
        """The events and effects decided since the last call."""
        out, self._out = self._out, fx.Decision()
        return out

    def persist(self, event: Any) -> None:
        self.state.apply(event)
        self._out.events.append(event)

    def emit(self, effect: fx.Effect) -> None:
        """An effect that may run while the events decided with it are being written."""
        self._out.now.append(effect)

    def submit(
        self, items: list[tuple[JobSpec, float | None]], now: float
    ) -> list[tuple[str, bool]]:
        """Accept jobs, all or none: [(job id, existing?)]; raises Refused."""
        state = self.state
        idempotency = state.idempotency
        self._check_keys(items)
        fresh = sum(1 for spec, _ in items if spec.idempotency_key not in idempotency)
        if state.active + fresh > self.config.max_pending:
            raise Refused(Backpressure(state.active, self.config.max_pending))
        answer: list[tuple[str, bool]] = []
        timers: list[fx.Timer] = []
        for spec, wanted_at in items:
            key = spec.idempotency_key
            if key is not None and key in idempotency:
                answer.append((idempotency[key], True))
                continue
            run_at = wanted_at if wanted_at is not None and wanted_at > now else None
            self.persist(Submitted(spec, now, run_at))
            answer.append((spec.id, False))
            if run_at is not None:
                timers.append((run_at, "due", spec.id, run_at))
        if timers:
            self._out.now.append(fx.Arm(timers))
        self.assign(now)
        return answer

    def _check_keys(self, items: list[tuple[JobSpec, float | None]]) -> None:
        """A key may name only one call: the same task with the same arguments."""
        idempotency = self.state.idempotency
        batch: dict[str, JobSpec] = {}
        for spec, _ in items:
            key = spec.idempotency_key
            if key is None:
                continue
            known = idempotency.get(key)
            first = self.state.jobs[known].spec if known is not None else batch.get(key)
            if first is None:
                batch[key] = spec
            elif first.task != spec.task or first.payload != spec.payload:
                raise Refused(IdempotencyConflict(key, first.id))

    def handle(self, message: Any, now: float) -> None:
        handler = _HANDLERS.get(type(message))
        if handler is None:
            raise TypeError(f"the dispatcher does not take {type(message).__name__}")
        handler(self, message, now)
        if self.state.buffered:
            self.cron.settle(now)
        self.assign(now)

    def recovered(
        self, now: float, unjournaled: Sequence[m.Result] = (), *, workers_alive: bool = False
    ) -> None:
        """Settle what a crash left open, through the same events as live operation.

        `unjournaled` are outcomes a worker reported to an earlier incarnation
        in this process that were not journaled before it restarted: such a
        job finished, it was not lost. With `workers_alive` (the Dispatcher
        restarted in a process whose workers kept running), an at-most-once
        job still running is waited for instead of being called lost.
        """
        state = self.state
        if self.limits:
            self.limits.restore(_starts(state), now)
        for job_id, attempt, ok, value, error, lineage, _ in unjournaled:
            job = state.jobs.get(job_id)
            if job is None or job.status is not S.RUNNING or job.attempts != attempt:
                continue
            if job.cancel_requested:
                self.persist(Cancelled(job_id, now))
                self._publish([(job_id, (S.CANCELLED, None, None))], state.jobs)
            elif ok:
                self.persist(Succeeded(job_id, attempt, value or _NONE, now))
                self._publish([(job_id, (S.SUCCEEDED, value, None))], state.jobs)
            else:
                self._fail(job_id, attempt, error or "failed", lineage, now)
        rerun = [j.id for j in state.running() if j.spec.delivery != "at_most_once"]
        if rerun:
            self.persist(Requeued(rerun, started=True, at=now))
        if workers_alive:
            self._adopt(state.running(), now)
        for job in state.running():  # what is left is at-most-once: lost, not re-run
            if workers_alive and job.worker in self.workers:
                continue  # adopted: its worker reports it
            self.persist(Failed(job.id, job.attempts, "lost in crash", now, None, None))
            self._out.now.append(fx.Publish([(job.id, (S.DEAD, None, "lost in crash"))]))
        timers = [(j.run_at or now, "due", j.id, j.run_at) for j in state.waiting()]
        if timers:
            self._out.now.append(fx.Arm(timers))
        for job in state.jobs.values():
            if job.status is S.DEAD and job.handoff_pending:
                self._bury(job)
        outcomes = [(j.id, (j.status, j.result, j.error)) for j in state.jobs.values()]
        finished = [(i, o) for i, o in outcomes if o[0].terminal]
        if finished:
            self._out.now.append(fx.Publish(finished))
        self._arm_sweep()
        self.cron.recovered(now)
        for name in self.workers:
            self._out.now.append(fx.Tell(name, m.Reset(self.epoch)))

    def _adopt(self, jobs: list[JobRecord], now: float) -> None:
        """Wait for the outcome of jobs a live worker is still running (or has just run)."""
        timers: list[fx.Timer] = []
        for job in jobs:
            slot = self.workers.get(job.worker or "")
            if slot is None:
                continue
            slot.assigned[job.id] = (job.attempts, 0.0)
            slot.progress_at = now
            if job.spec.timeout is not None:
                timers.append((now + job.spec.timeout, "timeout", job.id, job.attempts))
        if timers:
            self._out.now.append(fx.Arm(timers))

    # -- queries ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        state = self.state
        return {
            "statuses": {s.value: state.counts[s] for s in JobStatus},
            "queues": {q: state.depth[q] for q in self.config.queues},
            "active": state.active,
            "limited": self.limits.waiting(),
        }

    # -- messages -----------------------------------------------------------------

    def _submit_message(self, msg: m.Submit, now: float) -> None:
        try:
            answer = self.submit(msg.jobs, now)
        except Refused as refused:
            self._out.durable.append(fx.Refuse(msg.reply, refused.error))
            return
        self._out.durable.append(fx.Answer(msg.reply, answer))

    def _revive(self, msg: m.Revive, now: float) -> None:
        job = self.state.jobs.get(msg.job.id)
        # Only the death the dead letters hold: a repeated Revive (re-sent after
        # a crash) for a job that has run since must not run it again.
        if job is None or (job.status is S.DEAD and job.finished_at == msg.died_at):
            self.persist(Submitted(msg.job, now, None))
            self._out.now.append(fx.Forget([msg.job.id]))
        if msg.reply is not None:
            self._out.durable.append(fx.Answer(msg.reply, msg.job.id))
        self._out.durable.append(fx.Tell("deadletter", m.Revived(msg.job.id, msg.died_at)))

    def _ready(self, msg: m.Ready, now: float) -> None:
        slot = self.workers.get(msg.worker)
        # Incarnation numbers only grow: a Ready answering this epoch's Reset from
        # the newest incarnation we know of is current (after our own restart we
        # know none, and learn it here).
        if slot is not None and msg.epoch == self.epoch and msg.incarnation >= slot.incarnation:
            slot.incarnation = msg.incarnation
            slot.ready = msg.credits > 0

    def _worker_joined(self, msg: m.WorkerJoined, now: float) -> None:
        """A worker (re)started: the job it was running failed; the rest never began."""
        slot = self.workers[msg.worker]
        slot.incarnation = msg.incarnation
        slot.ready = False
        held, slot.assigned, slot.load = list(slot.assigned.items()), {}, 0.0
        if held and not slot.replacing:
            job_id, (attempt, _) = held.pop(0)
            self._stalled(job_id, attempt, f"worker {msg.worker}", now)
        slot.replacing = False
        unstarted = [job_id for job_id, _ in held]
        if unstarted:
            self.persist(Requeued(unstarted, started=False, at=now))
        self._out.now.append(fx.Tell(slot.name, m.Reset(self.epoch)))

    def _node_joined(self, msg: m.NodeJoined, now: float) -> None:
        for name in msg.workers:
            if name not in self.workers:
                self.workers[name] = WorkerSlot(name)
            self._out.now.append(fx.Tell(name, m.Reset(self.epoch)))

    def _node_lost(self, msg: m.NodeLost, now: float) -> None:
        """Each worker's running job failed its attempt (or is lost); the rest never began."""
        prefix = f"{msg.node}/"
        for name in [n for n in self.workers if n.startswith(prefix)]:
            slot = self.workers.pop(name)
            held = list(slot.assigned)
            if held:
                job_id = held.pop(0)
                job = self.state.jobs.get(job_id)
                if job is not None and job.status is S.RUNNING:
                    self._stalled(job_id, job.attempts, f"node {msg.node}", now)
            unstarted = [i for i in held if self.state.jobs[i].status is S.RUNNING]
            if unstarted:
                self.persist(Requeued(unstarted, started=False, at=now))

    def _finished(self, msg: m.Finished, now: float) -> None:
        slot = self.workers.get(msg.worker)
        if slot is None:
            return
        if slot.incarnation == -1 and slot.assigned:
            # Restarted while this worker ran an adopted job: its report comes
            # before its answer to our Reset. Attempt numbers still fence it.
            slot.incarnation = msg.incarnation
        if msg.incarnation != slot.incarnation:
            return  # a replaced worker's late answer: fenced
        jobs = self.state.jobs
        estimates = self.estimates
        slot.progress_at = now
        published: list[tuple[str, fx.Outcome]] = []
        tracebacks = msg.tracebacks or _NO_TRACEBACKS
        for job_id, attempt, ok, value, error, lineage, seconds in msg.results:
            held = slot.assigned.get(job_id)
            if held is None or held[0] != attempt:
                continue
            del slot.assigned[job_id]
            slot.load -= held[1]
            job = jobs.get(job_id)
            if job is None or job.status is not S.RUNNING or job.attempts != attempt:
                continue
            task = job.spec.task
            known = estimates.get(task)
            # Rise at once, fall slowly: one slow run makes the task travel alone.
            if known is None or seconds > known:
                estimates[task] = seconds
            else:
                estimates[task] = known * 0.8 + seconds * 0.2
            if job.cancel_requested:
                self.persist(Cancelled(job_id, now))
                published.append((job_id, (S.CANCELLED, None, None)))
            elif ok:
                self.persist(Succeeded(job_id, attempt, value or _NONE, now, seconds))
                published.append((job_id, (S.SUCCEEDED, value, None)))
            else:
                trace = tracebacks.get(job_id)
                self._fail(job_id, attempt, error or "failed", lineage, now, trace, seconds)
        if not slot.assigned:
            slot.load = 0.0  # no drift from float sums
        if published:
            self._publish(published, jobs)
        self._arm_sweep()

    def _publish(self, outcomes: list[tuple[str, fx.Outcome]], jobs: dict[str, JobRecord]) -> None:
        # An at-least-once outcome may be seen before it is durable: if it is lost
        # in a crash, the job runs again, which at-least-once allows. An
        # at-most-once job's outcome waits for the journal: after a crash nobody
        # must have seen it succeed and then find it dead-lettered as lost.
        eager = [o for o in outcomes if jobs[o[0]].spec.delivery != "at_most_once"]
        strict = [o for o in outcomes if jobs[o[0]].spec.delivery == "at_most_once"]
        if eager:
            self._out.now.append(fx.Publish(eager))
        if strict:
            self._out.durable.append(fx.Publish(strict))

    def _stalled(self, job_id: str, attempt: int, where: str, now: float) -> None:
        """The job's worker died under it; the count of such deaths rides in the error text."""
        job = self.state.jobs[job_id]
        if job.spec.delivery == "at_most_once":
            error = f"lost: {where} died while running the job"
            self.persist(Failed(job_id, attempt, error, now, None, None))
            self._out.durable.append(fx.Publish([(job_id, (S.DEAD, None, error))]))
            self._bury(job)
            return
        seen = _STALLED.search(job.error or "")
        stalls = (int(seen.group(1)) if seen else 0) + 1
        error = f"{where} died while running the job (stalled {stalls} time{'s' * (stalls > 1)})"
        if stalls > self.config.max_stalled:
            self.persist(Failed(job_id, attempt, error, now, None, None))
            self._out.durable.append(fx.Publish([(job_id, (S.DEAD, None, error))]))
            self._bury(job)
            return
        self._fail(job_id, attempt, error, WORKER_LOST, now)

    def _fail(
        self,
        job_id: str,
        attempt: int,
        error: str,
        lineage: tuple[str, ...],
        now: float,
        trace: str | None = None,
        ran: float | None = None,
    ) -> None:
        job = self.state.jobs[job_id]
        if job.cancel_requested:
            self.persist(Cancelled(job_id, now))
            self._publish([(job_id, (S.CANCELLED, None, None))], self.state.jobs)
            return
        policy = self.config.policy_for(job.spec.task, job.spec.policy)
        decision = policy.decide(
            lineage,
            job.failures,
            now,
            step=len(job.failures),
            last_delay=job.last_delay,
            rng=self.rng,
        )
        if not decision.restart:
            self.persist(Failed(job_id, attempt, error, now, None, None, trace, ran))
            self._out.durable.append(fx.Publish([(job_id, (S.DEAD, None, error))]))
            self._bury(job)
            return
        delay = decision.delay
        retry_at = now + delay
        self.persist(Failed(job_id, attempt, error, now, retry_at, delay, trace, ran))
        if delay <= 0:
            self.persist(BecameDue([job_id], now))
        else:
            self._out.now.append(fx.Arm([(retry_at, "due", job_id, retry_at)]))

    def _bury(self, job: JobRecord) -> None:
        self._out.durable.append(fx.Tell("deadletter", m.Bury(job.info())))

    def _recalled(self, msg: m.Recalled, now: float) -> None:
        slot = self.workers.get(msg.worker)
        if slot is None:
            return
        slot.recalling = False
        back = []
        for job_id in msg.ids:
            held = slot.assigned.pop(job_id, None)
            if held is not None:
                slot.load -= held[1]
                back.append(job_id)
        if back:
            self.persist(Requeued(back, started=False, at=now))

    def _dead_lettered(self, msg: m.DeadLettered, now: float) -> None:
        job = self.state.jobs.get(msg.job_id)
        if job is not None and job.handoff_pending:
            self.persist(HandedOff(msg.job_id))

    def _timers_fired(self, msg: m.TimersFired, now: float) -> None:
        due: list[str] = []
        for _when, kind, job_id, token in msg.timers:
            if kind == "sweep":
                self._sweep_armed = False
                self._sweep(now)
                continue
            if kind == "recall":
                continue  # handle() runs assign(), which recalls what is stuck
            if kind in ("rate", "budget"):
                self._release((kind, job_id), now)
                continue
            if kind == CRON_TIMER:
                self.cron.timer(job_id, token, now)
                continue
            job = self.state.jobs.get(job_id)
            if job is None:
                continue
            if kind == "due" and job.status in (S.SCHEDULED, S.RETRYING) and job.run_at == token:
                due.append(job_id)
            elif kind == "timeout" and job.status is S.RUNNING and job.attempts == token:
                self._time_out(job, now)
        if due:
            self.persist(BecameDue(due, now))

    def _time_out(self, job: JobRecord, now: float) -> None:
        self._out.now.append(fx.FlagCancelled(job.id))  # a cooperative handler may stop
        worker = job.worker
        if worker is not None:
            slot = self.workers[worker]
            held = slot.assigned.pop(job.id, None)
            if held is not None:
                slot.load -= held[1]
            slot.ready = False  # nothing more for the hung incarnation
            slot.replacing = True
            self._out.now.append(fx.ReplaceWorker(worker, f"job {job.id} timed out"))
        error = f"timed out after {job.spec.timeout}s"
        self._fail(job.id, job.attempts, error, TIMED_OUT, now)

    def _cancel(self, msg: m.Cancel, now: float) -> None:
        job = self.state.jobs.get(msg.job_id)
        if job is None or job.status.terminal:
            self._out.durable.append(fx.Answer(msg.reply, False))
            return
        if job.status is S.RUNNING:
            if not job.cancel_requested:
                self.persist(CancelRequested(job.id, now))
                self._out.now.append(fx.FlagCancelled(job.id))
        else:
            self.persist(Cancelled(job.id, now))
            self._out.durable.append(fx.Publish([(job.id, (S.CANCELLED, None, None))]))
            self._arm_sweep()
        self._out.durable.append(fx.Answer(msg.reply, True))

    def _get_job(self, msg: m.GetJob, now: float) -> None:
        job = self.state.jobs.get(msg.job_id)
        self._out.durable.append(fx.Answer(msg.reply, None if job is None else job.info()))

    def _get_stats(self, msg: m.GetStats, now: float) -> None:
        self._out.durable.append(fx.Answer(msg.reply, self.stats()))

    def _pause(self, msg: m.Pause, now: float) -> None:
        self.paused = msg.paused
        self._out.durable.append(fx.Answer(msg.reply, True))

    def _drain(self, msg: m.Drain, now: float) -> None:
        self.draining = True
        self._drain_waiters.append(msg.reply)
        self.check_drained()

    def check_drained(self) -> None:
        if self._drain_waiters and not self.state.counts[S.RUNNING]:
            for reply in self._drain_waiters:
                self._out.durable.append(fx.Answer(reply, True))
            self._drain_waiters = []

    # -- assignment, expiry -------------------------------------------------------

    def assign(self, now: float) -> None:
        """Hand queued jobs to workers with room, round robin, in priority order."""
        state = self.state
        if self.paused or self.draining:
            if self._drain_waiters:
                self.check_drained()
            return
        if not state.counts[S.QUEUED]:
            self._recall_stuck(now)
            return
        budget = self.config.batch_budget
        limit = self.config.max_batch
        estimates = self.estimates
        queues = self.config.queues
        jobs = state.jobs
        grants: dict[str, list[str]] = {}
        overdue = now - self.config.recall_after
        open_slots = [
            s
            for s in self.workers.values()
            if s.ready
            and s.load < budget
            and len(s.assigned) < limit
            and not (s.assigned and s.progress_at <= overdue)  # stuck on a long job
        ]
        limited = bool(self.limits)
        while open_slots:
            still_open = []
            for slot in open_slots:
                if limited:
                    job_id = self._next_ready(queues, now)
                else:
                    taken = state.take_ready(queues, 1)
                    job_id = taken[0] if taken else None
                if job_id is None:
                    open_slots = []
                    break
                job = jobs[job_id]
                # Started is applied below for the whole grant; mark the job taken now
                # so that it is not handed out twice meanwhile.
                estimate = estimates.get(job.spec.task, budget)
                slot.assigned[job_id] = (job.attempts + 1, estimate)
                slot.load += estimate
                grants.setdefault(slot.name, []).append(job_id)
                if slot.load < budget and len(slot.assigned) < limit:
                    still_open.append(slot)
            else:
                open_slots = still_open
        for name, ids in grants.items():
            self._start(name, ids, now)
        if not state.counts[S.QUEUED] or self.limits.parked:
            self._recall_stuck(now)

    def _next_ready(self, queues: tuple[str, ...], now: float) -> str | None:
        """The next queued job that its limits let start now; parks those they hold back."""
        state = self.state
        limits = self.limits
        while True:
            taken = state.take_ready(queues, 1)
            if not taken:
                return None
            job_id = taken[0]
            job = state.jobs[job_id]
            spec = job.spec
            retry = job.attempts > 0
            held = limits.admit(spec.task, spec.queue, retry, now)
            if held is None:
                if not retry and ("budget", spec.queue) in limits.parked:
                    # A first attempt adds budget.
                    self._release(("budget", spec.queue), now, timer=False)
                return job_id
            key, when = held
            if limits.park(key, (-spec.priority, job.seq, job_id)):
                self._out.now.append(fx.Arm([(when, key[0], key[1], None)]))

    def _release(self, key: tuple[str, str], now: float, *, timer: bool = True) -> None:
        """Put back into their queues the parked jobs a limit may have room for."""
        state = self.state
        for _, seq, job_id in self.limits.release(key, now, timer=timer):
            job = state.jobs.get(job_id)
            if job is not None and job.status is S.QUEUED and job.seq == seq:
                state.requeue_ready(job)
        if key in self.limits.parked and key not in self.limits.armed:
            # Some stay parked: look again when the limit has room.
            kind, name = key
            if kind == "rate":
                when = self.limits.logs[name].next_room()
            else:
                when = self.limits.windows[name].next_room(now)
            self.limits.armed.add(key)
            self._out.now.append(fx.Arm([(max(when, now), kind, name, None)]))

    def _recall_stuck(self, now: float) -> None:
        """Give idle workers the jobs stuck behind a job that overran its estimate."""
        workers = self.workers.values()
        if not any(s.ready and not s.assigned for s in workers):
            return
        for slot in workers:
            if (
                len(slot.assigned) > 1
                and not slot.recalling
                and now - slot.progress_at >= self.config.recall_after
            ):
                slot.recalling = True
                self._out.now.append(fx.Recall(slot.name, list(slot.assigned)[1:]))

    def _start(self, worker: str, ids: list[str], now: float) -> None:
        self.persist(Started(worker, ids, now, self.config.node))
        slot = self.workers[worker]
        if len(slot.assigned) == len(ids):
            slot.progress_at = now  # it was idle: its clock of progress starts now
        jobs = self.state.jobs
        batch = []
        timers: list[fx.Timer] = []
        strict = False
        headers: dict[str, dict[str, str]] | None = None
        for job_id in ids:
            job = jobs[job_id]
            spec = job.spec
            batch.append((job_id, job.attempts, spec.task, spec.payload))
            if spec.headers:
                headers = headers or {}
                headers[job_id] = spec.headers
            if spec.timeout is not None:
                timers.append((now + spec.timeout, "timeout", job_id, job.attempts))
            strict = strict or spec.delivery == "at_most_once"
        assign = fx.Tell(worker, m.Assign(self.epoch, batch, headers))
        # At most once: the start must be on record before the job can run. At
        # least once: the job may start while its events are written; if they are
        # lost in a crash, the job runs again, which at-least-once allows.
        (self._out.durable if strict else self._out.now).append(assign)
        if len(slot.assigned) > 1:
            timers.append((now + self.config.recall_after, "recall", worker, None))
        if timers:
            self._out.now.append(fx.Arm(timers))

    def _arm_sweep(self, not_before: float = 0.0) -> None:
        finished = self.state.finished
        if self._sweep_armed or not finished:
            return
        self._sweep_armed = True
        when = max(finished[0][0] + self.config.retention, not_before)
        self._out.now.append(fx.Arm([(when, "sweep", "", None)]))

    def _sweep(self, now: float) -> None:
        finished = self.state.finished
        horizon = now - self.config.retention
        expired: list[str] = []
        kept: list[tuple[float, str]] = []
        while finished and finished[0][0] <= horizon:
            at, job_id = finished.popleft()
            job = self.state.jobs.get(job_id)
            if job is None or not job.status.terminal or job.finished_at != at:
                continue  # revived or already gone: a stale entry
            if job.handoff_pending:
                kept.append((at, job_id))  # kept until the dead letters confirm
                self._bury(job)  # again: a crash of the DeadLetter actor may have lost it
            else:
                expired.append(job_id)
        finished.extendleft(reversed(kept))
        if expired:
            self.persist(Expired(expired))
            self._out.durable.append(fx.Forget(expired))
        # A dead job still awaiting its hand-off must not make the sweep spin.
        self._arm_sweep(not_before=now + min(60.0, self.config.retention / 10 + 0.01))


_NONE = b"\xc0"  # msgpack's nil: a handler that returned None
_NO_TRACEBACKS: dict[str, str] = {}

_HANDLERS: dict[type, Callable[[DispatchCore, Any, float], None]] = {
    m.Submit: DispatchCore._submit_message,
    m.Finished: DispatchCore._finished,
    m.Ready: DispatchCore._ready,
    m.WorkerJoined: DispatchCore._worker_joined,
    m.TimersFired: DispatchCore._timers_fired,
    m.Cancel: DispatchCore._cancel,
    m.GetJob: DispatchCore._get_job,
    m.GetStats: DispatchCore._get_stats,
    m.Revive: DispatchCore._revive,
    m.DeadLettered: DispatchCore._dead_lettered,
    m.Recalled: DispatchCore._recalled,
    m.NodeJoined: DispatchCore._node_joined,
    m.NodeLost: DispatchCore._node_lost,
    m.Drain: DispatchCore._drain,
    m.Pause: DispatchCore._pause,
}


def _starts(state: DispatcherState) -> list[tuple[float, str, str, bool]]:
    """Every start the jobs' history remembers: (time, task, queue, retry?)."""
    starts = []
    for job in state.jobs.values():
        spec = job.spec
        for record in job.history:
            attempt, started_at = record[0], record[1]
            if started_at is not None:
                starts.append((started_at, spec.task, spec.queue, attempt > 1))
        if job.status is S.RUNNING and job.started_at is not None:
            starts.append((job.started_at, spec.task, spec.queue, job.attempts > 1))
    return starts
