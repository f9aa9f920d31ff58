"""The Worker: runs the jobs it is assigned, one at a time, and reports outcomes.

A worker holds only what the Dispatcher gave it, and the Dispatcher gives
it more only while the estimated run time of what it holds is small (see
`actorq.core.dispatch`). Outcomes go back once an assignment is done, once
a job has run longer than `report_after`, and at the latest `report_after`
after they are known (a clock timer), so a job that turned out slow never
holds back the results of the quick ones before it. Each outcome
carries the time the job ran, from which the Dispatcher sizes later batches.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import pykka

from actorq.actors.board import ResultBoard
from actorq.clock import Clock
from actorq.context import JobContext, _current
from actorq.core import messages as m
from actorq.core.job import pack, unpack
from actorq.supervision.address import Address
from actorq.supervision.policy import exception_lineage

logger = logging.getLogger(__name__)

_incarnations = itertools.count(1)


class Grant(Sequence[tuple[str, int, str, bytes]]):
    """Jobs handed to one worker, in run order; those not started can be taken back.

    Shared by the worker, which takes the next job, and the Dispatcher, which
    recalls the rest when the job running before them overruns its estimate.
    """

    __slots__ = ("_jobs", "_lock", "_next")

    def __init__(self, jobs: Sequence[tuple[str, int, str, bytes]]) -> None:
        self._jobs = list(jobs)
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[tuple[str, int, str, bytes]]:
        return iter(list(self._jobs))

    def __getitem__(self, index: Any) -> Any:
        return self._jobs[index]

    def take(self) -> tuple[str, int, str, bytes] | None:
        with self._lock:
            if self._next >= len(self._jobs):
                return None
            job = self._jobs[self._next]
            self._next += 1
            return job

    def recall(self, ids: Collection[str]) -> list[str]:
        """Remove the jobs among `ids` that have not started; returns their ids."""
        with self._lock:
            rest = self._jobs[self._next :]
            back = [job[0] for job in rest if job[0] in ids]
            if back:
                self._jobs = self._jobs[: self._next] + [j for j in rest if j[0] not in ids]
            return back

    @property
    def done(self) -> bool:
        return self._next >= len(self._jobs)


class WorkerLost(Exception):
    """A job made its worker exit (SystemExit, KeyboardInterrupt inside a handler)."""


class Worker(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(
        self,
        name: str,
        *,
        dispatcher: Address,
        lookup: Callable[[str], Callable[..., Any] | None],
        board: ResultBoard,
        clock: Clock,
        report_after: float = 0.002,
    ) -> None:
        super().__init__()
        self.name = name
        self.dispatcher = dispatcher
        self.lookup = lookup
        self.board = board
        self.clock = clock
        self.report_after = report_after
        self.incarnation = next(_incarnations)
        self.epoch = 0
        self._outbox: list[m.Result] = []
        self._outbox_lock = threading.Lock()  # sending under it keeps outcomes in order

    def on_start(self) -> None:
        self.thread = threading.current_thread()  # a hung one is counted by its system
        self.dispatcher.tell(m.WorkerJoined(self.name, self.incarnation))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Assign):
            if message.epoch == self.epoch:
                self._run(message.jobs)
        elif isinstance(message, m.Reset):
            self.epoch = message.epoch
            self.dispatcher.tell(m.Ready(self.name, self.incarnation, self.epoch, 1))
        else:
            return super().on_receive(message)
        return None

    def _run(self, jobs: Sequence[tuple[str, int, str, bytes]]) -> None:
        stopped = self.actor_stopped
        clock = self.clock
        grant = jobs if isinstance(jobs, Grant) else Grant(jobs)
        while (job := grant.take()) is not None:
            job_id, attempt, task, payload = job
            if stopped.is_set():
                return  # replaced while hung: the new incarnation's jobs are not ours
            started = clock.now()
            try:
                ok, value, error, lineage = self._call(job_id, attempt, task, payload)
            except BaseException as exc:
                self._report()
                raise WorkerLost(f"job {job_id} ended its worker: {exc!r}") from exc
            seconds = clock.now() - started
            with self._outbox_lock:
                self._outbox.append((job_id, attempt, ok, value, error, lineage, seconds))
                first = len(self._outbox) == 1
            if seconds >= self.report_after:
                self._report()
            elif first and not grant.done:
                # If the next job turns out to be slow, this outcome leaves anyway
                # after `report_after`: the clock's thread reports it.
                self.clock.call_at(started + seconds + self.report_after, self._report)
        self._report()

    def _call(
        self, job_id: str, attempt: int, task: str, payload: bytes
    ) -> tuple[bool, bytes | None, str | None, tuple[str, ...]]:
        fn = self.lookup(task)
        if fn is None:
            return False, None, f"no task registered as {task!r}", ("actorq.UnknownTask",)
        token = _current.set(JobContext(job_id, attempt, task, self.board))
        try:
            args, kwargs = unpack(payload)
            value = fn(*args, **kwargs)
        except Exception as exc:
            return False, None, f"{type(exc).__name__}: {exc}", exception_lineage(exc)
        finally:
            _current.reset(token)
        try:
            # Encoded once, here: the journal stores these bytes and the caller decodes them.
            return True, pack(value), None, ()
        except (TypeError, ValueError, OverflowError) as exc:
            error = f"result cannot be encoded with msgpack: {exc}"
            return False, None, error, ("actorq.ResultNotSerializable",)

    def _report(self) -> None:
        """Send the outcomes not yet reported (from this worker's thread or the clock's)."""
        with self._outbox_lock:
            results, self._outbox = self._outbox, []
            if results and not self.actor_stopped.is_set():
                self.dispatcher.tell(m.Finished(self.name, self.incarnation, self.epoch, results))
