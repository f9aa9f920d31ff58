"""The Dispatcher: the single writer of job state.

It accepts submissions, hands queued jobs to workers that have credits,
turns outcomes into successes, retries (a restart under the job's
RestartPolicy, after a backoff kept by the Scheduler) or dead letters, and
fences late results by attempt number. Its state is `DispatcherState`; every
change is an event persisted with group commit before anyone hears of it.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from actorq import messages as m
from actorq.actors.board import Outcome, ResultBoard
from actorq.actors.events import (
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
from actorq.actors.state import DispatcherState, JobRecord
from actorq.clock import Clock
from actorq.errors import Backpressure
from actorq.job import JobStatus
from actorq.persistence.journal import Journal
from actorq.persistence.persistent import PersistentActor
from actorq.supervision.address import Address
from actorq.supervision.policy import RestartPolicy, exception_lineage
from actorq.supervision.supervisor import RestartChild

logger = logging.getLogger(__name__)
S = JobStatus

_epochs = itertools.count(1)

# Lineages recorded for failures that are not exceptions raised by a handler.
WORKER_LOST = ("actorq.WorkerLost", "Exception", "BaseException")
TIMED_OUT = exception_lineage(TimeoutError())


@dataclass
class DispatcherConfig:
    queues: tuple[str, ...] = ("default",)
    retention: float = 3600.0
    max_pending: int = 1_000_000
    policy_for: Callable[[str, dict[str, Any] | None], RestartPolicy] = lambda task, override: (
        RestartPolicy.from_dict(override) if override else RestartPolicy()
    )


@dataclass
class _WorkerSlot:
    """What the Dispatcher knows of one worker address.

    Credits are derived, not counted: the worker said how many jobs it can
    hold (`capacity`), and every job assigned and not yet reported is held.
    So a repeated or late Ready can never over-fill a worker.
    """

    address: Address
    incarnation: int = -1
    capacity: int = 0
    assigned: dict[str, int] = field(default_factory=dict)  # job id -> attempt, in run order
    replacing: bool = False  # its running job timed out; a new incarnation is on the way

    @property
    def credits(self) -> int:
        return self.capacity - len(self.assigned)


class Dispatcher(PersistentActor):
    persistence_id = "dispatcher"

    def __init__(
        self,
        journal: Journal,
        *,
        clock: Clock,
        board: ResultBoard,
        scheduler: Address,
        deadletter: Address,
        workers: Sequence[Address],
        supervisor: Callable[[], pykka.ActorRef[Any] | None],
        config: DispatcherConfig,
        rng: random.Random | None = None,
        **persistence: Any,
    ) -> None:
        super().__init__(journal, **persistence)
        self.clock = clock
        self.rng = rng or random.Random()
        self.board = board
        self.scheduler = scheduler
        self.deadletter = deadletter
        self.supervisor = supervisor
        self.config = config
        self.state = DispatcherState()
        self.workers = {w.name: _WorkerSlot(w) for w in workers}
        self.epoch = next(_epochs)
        self.draining = False
        self.paused = False
        self._drain_waiters: list[m.Reply] = []
        self._outcomes: list[tuple[str, Outcome]] = []
        self._sweep_armed = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            m.Submit: self._submit,
            m.Finished: self._finished,
            m.Ready: self._ready,
            m.WorkerJoined: self._worker_joined,
            m.TimersFired: self._timers_fired,
            m.Cancel: self._cancel,
            m.GetJob: self._get_job,
            m.GetStats: self._get_stats,
            m.Revive: self._revive,
            m.DeadLettered: self._dead_lettered,
            m.Drain: self._drain,
            m.Pause: self._pause,
        }

    # -- persistence -----------------------------------------------------------

    def apply(self, event: Any) -> None:
        self.state.apply(event)

    def reset(self) -> None:
        self.state = DispatcherState()

    def on_journal_unavailable(self, error: Any) -> None:
        self.board.unavailable = None if error is None else str(error)

    def snapshot_state(self) -> Any:
        return self.state.to_snapshot()

    def state_size(self) -> int:
        return len(self.state.jobs)

    def restore_snapshot(self, data: Any) -> None:
        self.state = DispatcherState.from_snapshot(data)

    def on_recovered(self) -> None:
        """Settle what a crash left open, through the same events as live operation."""
        now = self.clock.now()
        rerun = [j.id for j in self.state.running() if j.delivery != "at_most_once"]
        if rerun:
            self.persist(Requeued(rerun, started=True, at=now))
        for job in self.state.running():  # what is left is at-most-once: lost, not re-run
            self.persist(Failed(job.id, job.attempts, "lost in crash", now, None, None))
        timers = [(j.run_at or now, "due", j.id, j.run_at) for j in self.state.waiting()]
        if timers:
            self.scheduler.tell(m.Schedule(timers))
        for job in self.state.jobs.values():
            if job.status is S.DEAD and job.handoff_pending:
                self._bury(job)
        self._publish_all_finished()
        self._arm_sweep()
        for slot in self.workers.values():
            slot.address.tell(m.Reset(self.epoch))

    def after_commit_hook(self, events: list[Any]) -> None:
        if self._outcomes:
            self.board.publish(self._outcomes)
            self._outcomes = []
        self.board.set_idle(self.state.active == 0)
        if self._drain_waiters and not self.state.counts[S.RUNNING]:
            for future in self._drain_waiters:
                future.set(True)
            self._drain_waiters = []
        if self.observer is not None:
            self._notify(self.observer.committed, events, self.state)

    # -- messages -------------------------------------------------------------

    def handle(self, message: Any) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            logger.warning("dispatcher: unexpected message %r", message)
            return
        handler(message)

    def before_commit(self) -> None:
        if not (self.draining or self.paused):
            self._assign()

    def _submit(self, msg: m.Submit) -> None:
        state = self.state
        fresh = [j for j in msg.jobs if j.idempotency_key not in state.idempotency]
        if state.active + len(fresh) > self.config.max_pending:
            self.reply_error(msg.reply, Backpressure(state.active, self.config.max_pending))
            return
        now = self.clock.now()
        answer: list[tuple[str, bool]] = []
        timers = []
        for job in msg.jobs:
            key = job.idempotency_key
            if key is not None and key in state.idempotency:
                answer.append((state.idempotency[key], True))
                continue
            run_at = job.run_at if job.run_at is not None and job.run_at > now else None
            self.persist(_submitted(job, now, run_at))
            answer.append((job.id, False))
            if run_at is not None:
                timers.append((run_at, "due", job.id, run_at))
        if timers:
            self.after_commit(lambda: self.scheduler.tell(m.Schedule(timers)))
        self.reply(msg.reply, answer)

    def _revive(self, msg: m.Revive) -> None:
        job = self.state.jobs.get(msg.job.id)
        if job is not None and not job.status.terminal:
            self.reply(msg.reply, job.id)  # already back: reviving twice changes nothing
            return
        self.persist(_submitted(msg.job, self.clock.now(), None))
        self.after_commit(lambda: self.board.forget([msg.job.id]))
        self.reply(msg.reply, msg.job.id)

    def _ready(self, msg: m.Ready) -> None:
        slot = self.workers.get(msg.worker)
        # Incarnation numbers only grow: a Ready answering this epoch's Reset from
        # the newest incarnation we know of is current (after our own restart we
        # know none, and learn it here).
        if slot is not None and msg.epoch == self.epoch and msg.incarnation >= slot.incarnation:
            slot.incarnation = msg.incarnation
            slot.capacity = msg.credits

    def _worker_joined(self, msg: m.WorkerJoined) -> None:
        """A worker (re)started: the job it was running failed; the rest never began."""
        slot = self.workers[msg.worker]
        slot.incarnation = msg.incarnation
        slot.capacity = 0
        held, slot.assigned = list(slot.assigned.items()), {}
        now = self.clock.now()
        if held and not slot.replacing:
            job_id, attempt = held.pop(0)
            self._fail(job_id, attempt, "worker died while running the job", WORKER_LOST, now)
        slot.replacing = False
        if held:
            unstarted = [job_id for job_id, _ in held]
            if unstarted:
                self.persist(Requeued(unstarted, started=False, at=now))
        slot.address.tell(m.Reset(self.epoch))

    def _finished(self, msg: m.Finished) -> None:
        slot = self.workers.get(msg.worker)
        if slot is None or msg.incarnation != slot.incarnation:
            return  # a replaced worker's late answer: fenced
        now = self.clock.now()
        jobs = self.state.jobs
        for job_id, attempt, ok, value, error, lineage in msg.results:
            if slot.assigned.pop(job_id, None) != attempt:
                continue
            job = jobs.get(job_id)
            if job is None or job.status is not S.RUNNING or job.attempts != attempt:
                continue
            if job.cancel_requested:
                self.persist(Cancelled(job_id, now))
                self._outcomes.append((job_id, (S.CANCELLED, None, None)))
            elif ok:
                self.persist(Succeeded(job_id, attempt, value, now))
                self._outcomes.append((job_id, (S.SUCCEEDED, value, None)))
            else:
                self._fail(job_id, attempt, error or "failed", lineage, now)
        if self.state.finished:
            self._arm_sweep()

    def _fail(
        self, job_id: str, attempt: int, error: str, lineage: tuple[str, ...], now: float
    ) -> None:
        job = self.state.jobs[job_id]
        if job.cancel_requested:
            self.persist(Cancelled(job_id, now))
            self._outcomes.append((job_id, (S.CANCELLED, None, None)))
            return
        policy = self.config.policy_for(job.task, job.policy)
        decision = policy.decide(
            lineage,
            job.failures,
            now,
            step=len(job.failures),
            last_delay=job.last_delay,
            rng=self.rng,
        )
        if not decision.restart:
            self.persist(Failed(job_id, attempt, error, now, None, None))
            self._outcomes.append((job_id, (S.DEAD, None, error)))
            self._bury(job)
            return
        delay = decision.delay
        retry_at = now + delay
        self.persist(Failed(job_id, attempt, error, now, retry_at, delay))
        if delay <= 0:
            self.persist(BecameDue([job_id], now))
        else:
            self.after_commit(
                lambda: self.scheduler.tell(m.Schedule([(retry_at, "due", job_id, retry_at)]))
            )

    def _bury(self, job: JobRecord) -> None:
        entry = m.Bury(job.info().to_dict(), job.policy, job.delivery, job.timeout)
        self.after_commit(lambda: self.deadletter.tell(entry))

    def _dead_lettered(self, msg: m.DeadLettered) -> None:
        job = self.state.jobs.get(msg.job_id)
        if job is not None and job.handoff_pending:
            self.persist(HandedOff(msg.job_id))

    def _timers_fired(self, msg: m.TimersFired) -> None:
        now = self.clock.now()
        due: list[str] = []
        for _when, kind, job_id, token in msg.timers:
            if kind == "sweep":
                self._sweep_armed = False
                self._sweep(now)
                continue
            job = self.state.jobs.get(job_id)
            if job is None:
                continue
            if kind == "due" and job.status in (S.SCHEDULED, S.RETRYING) and job.run_at == token:
                due.append(job_id)
            elif kind == "timeout" and job.status is S.RUNNING and job.attempts == token:
                self._time_out(job)
        if due:
            self.persist(BecameDue(due, now))

    def _time_out(self, job: JobRecord) -> None:
        worker = job.worker
        self.board.cancelled.add(job.id)  # a cooperative handler may notice and stop
        if worker is not None:
            slot = self.workers[worker]
            slot.assigned.pop(job.id, None)
            slot.capacity = 0  # nothing more for the hung incarnation
            slot.replacing = True
            supervisor = self.supervisor()
            if supervisor is not None:
                supervisor.tell(RestartChild(worker, f"job {job.id} timed out"))
        error = f"timed out after {job.timeout}s"
        self._fail(job.id, job.attempts, error, TIMED_OUT, self.clock.now())

    def _cancel(self, msg: m.Cancel) -> None:
        job = self.state.jobs.get(msg.job_id)
        if job is None or job.status.terminal:
            self.reply(msg.reply, False)
            return
        now = self.clock.now()
        if job.status is S.RUNNING:
            if not job.cancel_requested:
                self.persist(CancelRequested(job.id, now))
                self.board.cancelled.add(job.id)
        else:
            self.persist(Cancelled(job.id, now))
            self._outcomes.append((job.id, (S.CANCELLED, None, None)))
            self._arm_sweep()
        self.reply(msg.reply, True)

    def _get_job(self, msg: m.GetJob) -> None:
        job = self.state.jobs.get(msg.job_id)
        self.reply(msg.reply, None if job is None else job.info())

    def _get_stats(self, msg: m.GetStats) -> None:
        state = self.state
        self.reply(
            msg.reply,
            {
                "statuses": {s.value: state.counts[s] for s in JobStatus},
                "queues": {q: state.depth[q] for q in self.config.queues},
                "active": state.active,
            },
        )

    def _pause(self, msg: m.Pause) -> None:
        self.paused = msg.paused
        self.reply(msg.reply, True)

    def _drain(self, msg: m.Drain) -> None:
        self.draining = True
        if self.state.counts[S.RUNNING]:
            self._drain_waiters.append(msg.reply)
        else:
            self.reply(msg.reply, True)

    # -- assignment, expiry ----------------------------------------------------

    def _assign(self) -> None:
        state = self.state
        waiting = sum(state.depth[q] for q in self.config.queues)
        if not waiting:
            return
        hungry = [s for s in self.workers.values() if s.credits > 0]
        now = self.clock.now()
        while hungry and waiting > 0:
            # Spread work: each hungry worker gets an equal share, up to its credits.
            share = max(1, -(-waiting // len(hungry)))
            for slot in hungry:
                ids = state.take_ready(self.config.queues, min(share, slot.credits))
                if not ids:
                    waiting = 0
                    break
                waiting -= len(ids)
                self._start(slot, ids, now)
            hungry = [s for s in hungry if s.credits > 0]

    def _start(self, slot: _WorkerSlot, ids: list[str], now: float) -> None:
        self.persist(Started(slot.address.name, ids, now))
        jobs = self.state.jobs
        batch = []
        timers = []
        for job_id in ids:
            job = jobs[job_id]
            slot.assigned[job_id] = job.attempts
            batch.append((job_id, job.attempts, job.task, job.args, job.kwargs))
            if job.timeout is not None:
                timers.append((now + job.timeout, "timeout", job_id, job.attempts))
        assign = m.Assign(self.epoch, batch)
        address = slot.address
        if any(jobs[job_id].delivery == "at_most_once" for job_id in ids):
            # At most once: the start must be on record before the job can run.
            self.after_commit(lambda: address.tell(assign))
        else:
            # At least once: the job may start while its events are written. If they
            # are lost in a crash, the job runs again, which at-least-once allows; and
            # no submitter hears "accepted" before its Submitted event is durable.
            self.before_append(lambda: address.tell(assign))
        if timers:
            self.after_commit(lambda: self.scheduler.tell(m.Schedule(timers)))

    def _arm_sweep(self, not_before: float = 0.0) -> None:
        if self._sweep_armed or not self.state.finished:
            return
        self._sweep_armed = True
        when = max(self.state.finished[0][0] + self.config.retention, not_before)
        self.after_commit(lambda: self.scheduler.tell(m.Schedule([(when, "sweep", "", None)])))

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
            else:
                expired.append(job_id)
        finished.extendleft(reversed(kept))
        if expired:
            self.persist(Expired(expired))
            self.after_commit(lambda: self.board.forget(expired))
        # A dead job still awaiting its hand-off must not make the sweep spin.
        self._arm_sweep(not_before=now + min(60.0, self.config.retention / 10 + 0.01))

    def _publish_all_finished(self) -> None:
        for job in self.state.jobs.values():
            if job.status.terminal:
                self._outcomes.append((job.id, (job.status, job.result, job.error)))


def _submitted(job: m.NewJob, now: float, run_at: float | None) -> Submitted:
    return Submitted(
        job.id,
        job.task,
        job.args,
        job.kwargs,
        job.queue,
        job.priority,
        now,
        run_at,
        job.timeout,
        job.policy,
        job.delivery,
        job.idempotency_key,
    )
