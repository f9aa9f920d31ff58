"""The Dispatcher's state machine: invariants after every step, replay equals live."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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
from actorq.core.job import JobSpec, pack
from actorq.core.state import DispatcherState
from actorq.job import JobStatus
from actorq.persistence import codec

S = JobStatus
QUEUES = ("high", "default")


class DispatcherModel(RuleBasedStateMachine):
    """Drives DispatcherState the way the Dispatcher does: only valid events, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.state = DispatcherState()
        self.events: list[Any] = []
        self.now = 1000.0
        self.counter = 0
        self.snapshot: tuple[dict[str, Any], int] | None = None

    def emit(self, event: Any) -> None:
        self.state.apply(event)
        self.events.append(event)

    def ids(self, *statuses: JobStatus) -> list[str]:
        return sorted(j.id for j in self.state.jobs.values() if j.status in statuses)

    @rule(
        delayed=st.booleans(),
        priority=st.integers(-100, 100),
        queue=st.sampled_from(QUEUES),
        key=st.none() | st.sampled_from(["k1", "k2", "k3"]),
    )
    def submit(self, delayed: bool, priority: int, queue: str, key: str | None) -> None:
        if key is not None and key in self.state.idempotency:
            return  # the Dispatcher answers with the existing job; no event
        self.counter += 1
        self.now += 1
        self.emit(
            Submitted(
                JobSpec(
                    id=f"j{self.counter}",
                    task="t",
                    payload=pack([[self.counter], {}]),
                    queue=queue,
                    priority=priority,
                    idempotency_key=key,
                ),
                self.now,
                self.now + 5 if delayed else None,
            )
        )

    @rule(data=st.data())
    def become_due(self, data: st.DataObject) -> None:
        waiting = self.ids(S.SCHEDULED, S.RETRYING)
        if waiting:
            chosen = data.draw(st.lists(st.sampled_from(waiting), min_size=1, unique=True))
            self.now += 1
            self.emit(BecameDue(chosen, self.now))

    @rule(limit=st.integers(1, 5), worker=st.sampled_from(["w1", "w2"]))
    def start(self, limit: int, worker: str) -> None:
        expected = sorted(
            (j for j in self.state.jobs.values() if j.status is S.QUEUED),
            key=lambda j: (QUEUES.index(j.spec.queue), -j.spec.priority, j.seq),
        )[:limit]
        taken = self.state.take_ready(QUEUES, limit)
        assert taken == [j.id for j in expected], "queues in order, then priority, then FIFO"
        if taken:
            self.emit(Started(worker, taken, self.now))

    @rule(data=st.data(), outcome=st.sampled_from(["ok", "retry", "dead", "requeue", "rerun"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        running = self.ids(S.RUNNING)
        if not running:
            return
        job = self.state.jobs[data.draw(st.sampled_from(running))]
        self.now += 1
        if outcome == "ok":
            self.emit(Succeeded(job.id, job.attempts, pack({"v": job.attempts}), self.now))
        elif outcome == "retry":
            self.emit(Failed(job.id, job.attempts, "boom", self.now, self.now + 2, 2.0))
        elif outcome == "dead":
            self.emit(Failed(job.id, job.attempts, "boom", self.now, None, None))
        else:
            self.emit(Requeued([job.id], started=outcome == "rerun", at=self.now))

    @rule(data=st.data())
    def stale_result_is_fenced(self, data: st.DataObject) -> None:
        if not self.state.jobs:
            return
        job = self.state.jobs[data.draw(st.sampled_from(sorted(self.state.jobs)))]
        before = self.state.logical()
        self.emit(Succeeded(job.id, job.attempts + 1, pack("late"), self.now))
        assert self.state.logical() == before

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = self.ids(S.SCHEDULED, S.QUEUED, S.RETRYING, S.RUNNING)
        if not live:
            return
        job = self.state.jobs[data.draw(st.sampled_from(live))]
        self.now += 1
        if job.status is S.RUNNING:
            self.emit(CancelRequested(job.id, self.now))
        else:
            self.emit(Cancelled(job.id, self.now))

    @rule()
    def hand_off_and_expire(self) -> None:
        for job_id in self.ids(S.DEAD):
            if self.state.jobs[job_id].handoff_pending:
                self.emit(HandedOff(job_id))
        done = [
            j.id for j in self.state.jobs.values() if j.status.terminal and not j.handoff_pending
        ]
        if done:
            self.emit(Expired(done[: len(done) // 2 + 1]))

    @precondition(lambda self: self.snapshot is None and self.events)
    @rule()
    def take_snapshot(self) -> None:
        data = codec.decode(codec.encode(self.state.to_snapshot()))
        self.snapshot = (data, len(self.events))

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def every_job_has_exactly_one_counted_status(self) -> None:
        actual: dict[JobStatus, int] = {}
        for job in self.state.jobs.values():
            actual[job.status] = actual.get(job.status, 0) + 1
        assert {s: n for s, n in self.state.counts.items() if n} == actual

    @invariant()
    def queued_jobs_are_reachable_in_their_queue(self) -> None:
        for job in self.state.jobs.values():
            if job.status is S.QUEUED:
                assert (-job.spec.priority, job.seq, job.id) in self.state.queues[job.spec.queue]
        for queue in QUEUES:
            queued = sum(
                1
                for j in self.state.jobs.values()
                if j.status is S.QUEUED and j.spec.queue == queue
            )
            assert self.state.depth[queue] == queued

    @invariant()
    def records_are_consistent(self) -> None:
        for job in self.state.jobs.values():
            assert (job.worker is not None) == (job.status is S.RUNNING)
            assert job.attempts >= 0
            assert len(job.failures) <= job.attempts
            assert job.status.terminal == (job.finished_at is not None)
            assert (job.run_at is not None) == (job.status in (S.SCHEDULED, S.RETRYING))
        for key, job_id in self.state.idempotency.items():
            assert self.state.jobs[job_id].spec.idempotency_key == key

    @invariant()
    def replay_rebuilds_the_same_state(self) -> None:
        replayed = DispatcherState()
        for event in self.events:
            replayed.apply(codec.decode_batch(codec.encode_batch([event]))[0])
        assert replayed.logical() == _plain(self.state.logical())

    @invariant()
    def snapshot_plus_tail_equals_full_replay(self) -> None:
        if self.snapshot is None:
            return
        data, upto = self.snapshot
        restored = DispatcherState.from_snapshot(data)
        for event in self.events[upto:]:
            restored.apply(event)
        assert _plain(restored.logical()) == _plain(self.state.logical()), _diff(
            _plain(restored.logical()), _plain(self.state.logical())
        )


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    out = [f"{k}: {a[k]!r} != {b.get(k)!r}" for k in a if k != "jobs" and a[k] != b.get(k)]
    for job_id in set(a["jobs"]) | set(b["jobs"]):
        ra, rb = a["jobs"].get(job_id, {}), b["jobs"].get(job_id, {})
        out += [
            f"{job_id}.{f}: {ra.get(f)!r} != {rb.get(f)!r}"
            for f in set(ra) | set(rb)
            if ra.get(f) != rb.get(f)
        ]
    return "; ".join(out)


def _plain(data: Any) -> Any:
    """As msgpack would carry it: tuples become lists."""
    return msgpack.unpackb(msgpack.packb(data), strict_map_key=False)


DispatcherModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestDispatcherState = DispatcherModel.TestCase
