"""The Dispatcher's state: a pure state machine over the events in `events.py`.

`apply(event)` is the only way the logical state changes, live and during
recovery alike. The ready queues are heaps with lazy deletion: an entry whose
job is no longer queued (started, cancelled) is skipped when it reaches the
top, so the heaps may hold stale entries; `logical()` is the canonical view
that two equal states share.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from actorq.core.events import (
    BecameDue,
    Cancelled,
    CancelRequested,
    Expired,
    Failed,
    HandedOff,
    Requeued,
    ScheduleBuffered,
    ScheduleDeleted,
    ScheduleFired,
    SchedulePaused,
    ScheduleSet,
    ScheduleSkipped,
    Started,
    Submitted,
    Succeeded,
)
from actorq.core.job import Attempt, JobInfo, JobSpec, JobStatus, pack, unpack
from actorq.core.schedules import ScheduleRecord

S = JobStatus
_WAITING = (S.SCHEDULED, S.RETRYING)
SNAPSHOT_VERSION = 2
# A job keeps the records of its latest attempts only: one that retries very
# often must not grow without bound (finished jobs go with the retention).
HISTORY_LIMIT = 20


class JobRecord:
    """One job's mutable record: its spec and how it is doing."""

    __slots__ = (
        "attempts",
        "cancel_requested",
        "created_at",
        "error",
        "failures",
        "finished_at",
        "handoff_pending",
        "history",
        "last_delay",
        "node",
        "result",
        "run_at",
        "seq",
        "spec",
        "started_at",
        "status",
        "traceback",
        "worker",
    )

    def __init__(self, e: Submitted, seq: int) -> None:
        self.spec = e.spec
        self.created_at = e.at
        self.run_at = e.run_at
        self.status = S.SCHEDULED if e.run_at is not None else S.QUEUED
        self.seq = seq
        self.attempts = 0
        self.failures: list[float] = []
        self.last_delay: float | None = None
        self.result: bytes | None = None  # msgpack, as the worker encoded it
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.worker: str | None = None
        self.node: str | None = None
        self.traceback: str | None = None
        # [attempt, started_at, finished_at, worker, node, outcome, error,
        #  traceback, retry_delay, ran]: the order of job.ATTEMPT_FIELDS
        self.history: list[list[Any]] = _NO_HISTORY  # a list of its own from the first record
        self.cancel_requested = False
        self.handoff_pending = False

    @property
    def id(self) -> str:
        return self.spec.id

    def info(self) -> JobInfo:
        return JobInfo(
            spec=self.spec,
            status=self.status,
            attempts=self.attempts,
            result=None if self.result is None else unpack(self.result),
            error=self.error,
            created_at=self.created_at,
            run_at=self.run_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            traceback=self.traceback,
            history=tuple(Attempt.from_values(r) for r in self.history),
        )

    def record(
        self,
        outcome: str,
        at: float,
        error: str | None = None,
        trace: str | None = None,
        delay: float | None = None,
        ran: float | None = None,
    ) -> None:
        """Close the current attempt's record (before `worker` is cleared)."""
        record = [
            self.attempts,
            self.started_at,
            at,
            self.worker,
            self.node,
            outcome,
            error,
            trace,
            delay,
            ran,
        ]
        history = self.history
        if not history:
            self.history = [record]
            return
        history.append(record)
        if len(history) > HISTORY_LIMIT:
            del history[0]

    def to_row(self) -> dict[str, Any]:
        return dict(zip(self.__slots__, self.to_values(), strict=True))

    def to_values(self) -> list[Any]:
        """The record as a list in `__slots__` order (snapshots store rows positionally)."""
        values = [getattr(self, name) for name in self.__slots__]
        values[_STATUS] = self.status.value
        values[_FAILURES] = list(self.failures)  # never share a list the state mutates
        values[_HISTORY] = list(self.history)  # records themselves are never changed
        values[_SPEC] = self.spec.to_wire()
        return values

    @classmethod
    def from_values(cls, fields: list[str], values: list[Any]) -> JobRecord:
        job = cls.__new__(cls)
        # Fields added after a snapshot was written take their defaults.
        job.node = job.traceback = None
        job.history = []
        for name, value in zip(fields, values, strict=True):
            setattr(job, name, value)
        job.status = JobStatus(job.status)
        job.failures = list(job.failures)  # never share a list with the snapshot data
        job.history = list(job.history)
        job.spec = JobSpec.from_wire(job.spec)  # type: ignore[arg-type]
        return job


_STATUS = JobRecord.__slots__.index("status")
_FAILURES = JobRecord.__slots__.index("failures")
_NO_HISTORY: list[list[Any]] = []  # shared by records with no attempt yet; never appended to
_HISTORY = JobRecord.__slots__.index("history")
_SPEC = JobRecord.__slots__.index("spec")
_SPEC_FIELDS = ("id", "task", "queue", "priority", "timeout", "policy", "delivery")


def _upcast_snapshot_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 rows kept the spec's fields flat, with args, kwargs and result decoded."""
    old = data["fields"]
    fields = [name for name in JobRecord.__slots__ if name in old or name == "spec"]
    rows = []
    for values in data["jobs"]:
        row = dict(zip(old, values, strict=True))
        spec = {name: row[name] for name in _SPEC_FIELDS}
        spec["payload"] = pack([row["args"], row["kwargs"]])
        spec["idempotency_key"] = row["idempotency_key"]
        row["spec"] = spec
        row["result"] = None if row["result"] is None else pack(row["result"])
        rows.append([row[name] for name in fields])
    next_seq = data["next_seq"]
    return {"version": SNAPSHOT_VERSION, "fields": fields, "jobs": rows, "next_seq": next_seq}


class DispatcherState:
    """All jobs the Dispatcher knows, their queues, the idempotency keys, and the schedules."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.idempotency: dict[str, str] = {}
        self.queues: dict[str, list[tuple[int, int, str]]] = {}
        self.counts: Counter[JobStatus] = Counter()
        self.depth: Counter[str] = Counter()
        self.finished: deque[tuple[float, str]] = deque()  # in finishing order, for expiry
        self.next_seq = 1
        self.schedules: dict[str, ScheduleRecord] = {}
        self.buffered: set[str] = set()  # schedules holding a fire back (overlap="buffer_one")
        self._apply: dict[type, Callable[[Any], None]] = {
            Submitted: self._submitted,
            BecameDue: self._due,
            Started: self._started,
            Succeeded: self._succeeded,
            Failed: self._failed,
            Requeued: self._requeued,
            CancelRequested: self._cancel_requested,
            Cancelled: self._cancelled,
            HandedOff: self._handed_off,
            Expired: self._expired,
            ScheduleSet: self._schedule_set,
            SchedulePaused: self._schedule_paused,
            ScheduleDeleted: self._schedule_deleted,
            ScheduleFired: self._schedule_fired,
            ScheduleSkipped: self._schedule_skipped,
            ScheduleBuffered: self._schedule_buffered,
        }

    # -- the one way in -------------------------------------------------------

    def apply(self, event: Any) -> None:
        self._apply[type(event)](event)

    # -- queries ---------------------------------------------------------------

    @property
    def active(self) -> int:
        """Jobs not yet in a terminal status."""
        c = self.counts
        return c[S.SCHEDULED] + c[S.QUEUED] + c[S.RUNNING] + c[S.RETRYING]

    def take_ready(self, queues: Iterable[str], limit: int) -> list[str]:
        """Pop up to `limit` queued job ids, queues in order, priority then FIFO.

        Callers must apply `Started` for the ids at once: popping is the
        physical half of that event, which replay finds already stale.
        """
        taken: list[str] = []
        for name in queues:
            heap = self.queues.get(name)
            while heap and len(taken) < limit:
                _, seq, job_id = heapq.heappop(heap)
                job = self.jobs.get(job_id)
                if job is not None and job.status is S.QUEUED and job.seq == seq:
                    taken.append(job_id)
            if len(taken) >= limit:
                break
        return taken

    def requeue_ready(self, job: JobRecord) -> None:
        """Put a queued job that a limit held back into its ready heap again (physical only)."""
        spec = job.spec
        heapq.heappush(self.queues.setdefault(spec.queue, []), (-spec.priority, job.seq, spec.id))

    def waiting(self) -> list[JobRecord]:
        """Scheduled and retrying jobs: their timers must be armed after recovery."""
        return [j for j in self.jobs.values() if j.status in _WAITING]

    def running(self) -> list[JobRecord]:
        return [j for j in self.jobs.values() if j.status is S.RUNNING]

    def logical(self) -> dict[str, Any]:
        """A canonical, comparable view: equal for equal states, whatever the heaps hold."""
        return {
            "jobs": {i: j.to_row() for i, j in sorted(self.jobs.items())},
            "idempotency": dict(sorted(self.idempotency.items())),
            "next_seq": self.next_seq,
            "schedules": {n: r.to_row() for n, r in sorted(self.schedules.items())},
        }

    # -- snapshots -----------------------------------------------------------

    def to_snapshot(self) -> dict[str, Any]:
        return {
            "version": SNAPSHOT_VERSION,
            "fields": list(JobRecord.__slots__),
            "jobs": [j.to_values() for j in self.jobs.values()],
            "next_seq": self.next_seq,
            "schedules": [r.to_row() for r in self.schedules.values()],
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> DispatcherState:
        if data.get("version", 1) == 1:
            data = _upcast_snapshot_v1(data)
        state = cls()
        state.next_seq = data["next_seq"]
        finished = []
        fields = data["fields"]
        for row in data["jobs"]:
            job = JobRecord.from_values(fields, row)
            state._track(job)
            if job.status.terminal:
                finished.append((job.finished_at or 0.0, job.seq, job.id))
        finished.sort()
        state.finished.extend((at, job_id) for at, _, job_id in finished)
        # Snapshots taken before schedules existed have no such field.
        for row in data.get("schedules", ()):
            record = ScheduleRecord.from_row(row)
            state.schedules[record.spec.name] = record
            if record.buffered is not None:
                state.buffered.add(record.spec.name)
        return state

    # -- bookkeeping -----------------------------------------------------------

    def _track(self, job: JobRecord) -> None:
        self.jobs[job.id] = job
        self.counts[job.status] += 1
        key = job.spec.idempotency_key
        if key is not None:
            self.idempotency[key] = job.id
        if job.status is S.QUEUED:
            self._enqueue(job)

    def _enqueue(self, job: JobRecord) -> None:
        spec = job.spec
        heapq.heappush(self.queues.setdefault(spec.queue, []), (-spec.priority, job.seq, spec.id))
        self.depth[spec.queue] += 1

    def _move(self, job: JobRecord, status: JobStatus) -> None:
        old = job.status
        if old is S.QUEUED:
            self.depth[job.spec.queue] -= 1
        self.counts[old] -= 1
        self.counts[status] += 1
        job.status = status
        if status is S.QUEUED:
            job.seq = self.next_seq
            self.next_seq += 1
            self._enqueue(job)

    def _finish(self, job: JobRecord, status: JobStatus, at: float) -> None:
        self._move(job, status)
        job.finished_at = at
        job.worker = None
        self.finished.append((at, job.id))

    def _running(self, job_id: str, attempt: int) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is None or job.status is not S.RUNNING or job.attempts != attempt:
            return None
        return job

    # -- appliers ----------------------------------------------------------------

    def _submitted(self, e: Submitted) -> None:
        old = self.jobs.pop(e.spec.id, None)
        if old is not None:  # a dead job revived: forget the old record
            self.counts[old.status] -= 1
        job = JobRecord(e, self.next_seq)
        self.next_seq += 1
        self._track(job)

    def _due(self, e: BecameDue) -> None:
        for job_id in e.ids:
            job = self.jobs.get(job_id)
            if job is not None and job.status in _WAITING:
                job.run_at = None
                self._move(job, S.QUEUED)

    def _started(self, e: Started) -> None:
        for job_id in e.ids:
            job = self.jobs[job_id]
            self._move(job, S.RUNNING)
            job.attempts += 1
            job.worker = e.worker
            job.node = e.node
            job.started_at = e.at

    def _succeeded(self, e: Succeeded) -> None:
        job = self._running(e.id, e.attempt)
        if job is not None:
            job.result = e.result
            job.error = None
            job.traceback = None
            job.record("succeeded", e.at, ran=e.ran)
            self._finish(job, S.SUCCEEDED, e.at)

    def _failed(self, e: Failed) -> None:
        job = self._running(e.id, e.attempt)
        if job is None:
            return
        job.error = e.error
        job.traceback = e.traceback
        job.failures.append(e.at)
        job.last_delay = e.delay
        job.record("failed", e.at, e.error, e.traceback, e.delay, e.ran)
        if e.retry_at is None:
            job.handoff_pending = True
            self._finish(job, S.DEAD, e.at)
        else:
            job.worker = None
            job.run_at = e.retry_at
            self._move(job, S.RETRYING)

    def _requeued(self, e: Requeued) -> None:
        for job_id in e.ids:
            job = self.jobs.get(job_id)
            if job is not None and job.status is S.RUNNING:
                if e.started:
                    job.record("interrupted", e.at)
                else:
                    job.attempts -= 1
                job.worker = None
                self._move(job, S.QUEUED)

    def _cancel_requested(self, e: CancelRequested) -> None:
        job = self.jobs.get(e.id)
        if job is not None and job.status is S.RUNNING:
            job.cancel_requested = True

    def _cancelled(self, e: Cancelled) -> None:
        job = self.jobs.get(e.id)
        if job is not None and not job.status.terminal:
            job.run_at = None
            if job.status is S.RUNNING:
                job.record("cancelled", e.at)
            self._finish(job, S.CANCELLED, e.at)

    def _handed_off(self, e: HandedOff) -> None:
        job = self.jobs.get(e.id)
        if job is not None:
            job.handoff_pending = False

    def _expired(self, e: Expired) -> None:
        for job_id in e.ids:
            job = self.jobs.pop(job_id, None)
            if job is None:
                continue
            self.counts[job.status] -= 1
            key = job.spec.idempotency_key
            if key is not None and self.idempotency.get(key) == job_id:
                del self.idempotency[key]

    # -- schedules -----------------------------------------------------------------

    def _schedule_set(self, e: ScheduleSet) -> None:
        record = self.schedules.get(e.spec.name)
        if record is None:
            self.schedules[e.spec.name] = ScheduleRecord(e.spec, e.at)
        else:  # a changed definition never fires for instants before the change
            record.spec = e.spec
            record.hwm = max(record.hwm, e.at)

    def _schedule_paused(self, e: SchedulePaused) -> None:
        record = self.schedules.get(e.name)
        if record is not None:
            record.paused = e.paused
            if not e.paused:
                record.hwm = max(record.hwm, e.at)

    def _schedule_deleted(self, e: ScheduleDeleted) -> None:
        self.schedules.pop(e.name, None)
        self.buffered.discard(e.name)

    def _schedule_fired(self, e: ScheduleFired) -> None:
        record = self.schedules.get(e.name)
        if record is None:
            return
        record.last_job = e.job_id
        record.fired += 1
        if not e.manual:
            record.hwm = max(record.hwm, e.instant)
            if record.buffered == e.instant:
                record.buffered = None
                self.buffered.discard(e.name)

    def _schedule_skipped(self, e: ScheduleSkipped) -> None:
        record = self.schedules.get(e.name)
        if record is None:
            return
        record.hwm = max(record.hwm, e.upto)
        if e.reason == "missed":
            record.missed += e.count
        else:
            record.skipped += e.count

    def _schedule_buffered(self, e: ScheduleBuffered) -> None:
        record = self.schedules.get(e.name)
        if record is not None:
            record.hwm = max(record.hwm, e.instant)
            record.buffered = e.instant
            self.buffered.add(e.name)
