"""The Worker: runs the jobs it is assigned, one at a time, and reports outcomes.

A worker holds only what the Dispatcher gave it, and the Dispatcher gives
it more only while the estimated run time of what it holds is small (see
`actorq.core.dispatch`). Outcomes go back once an assignment is done, once
a job has run longer than `report_after`, and at the latest `report_after`
after they are known (a clock timer), so a job that turned out slow never
holds back the results of the quick ones before it. Each outcome
carries the time the job ran, from which the Dispatcher sizes later batches.

Where a job runs is the pool's business (`actorq.actors.execution.Pool`):
in this worker's thread (`pool_threads`, the default) or in a child
process the worker owns (`pool_processes`); either way the worker is what
the Dispatcher grants to, hears from and replaces.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import pykka

from actorq.actors.board import ResultBoard
from actorq.actors.execution import Pool, Runner
from actorq.actors.pool_threads import ThreadPool
from actorq.clock import Clock
from actorq.core import messages as m
from actorq.middleware import JobRun, MiddlewareStack, RunResult
from actorq.supervision.address import Address

logger = logging.getLogger(__name__)

_incarnations = itertools.count(1)
_NO_MIDDLEWARE = MiddlewareStack()
_NO_HEADERS: Mapping[str, str] = {}


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
        pool: Pool | None = None,
        report_after: float = 0.002,
        middleware: MiddlewareStack | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.dispatcher = dispatcher
        self.lookup = lookup
        self.board = board
        self.clock = clock
        self._own_pool = pool is None  # then its event loop, if used, is this worker's own
        self.pool: Pool = pool if pool is not None else ThreadPool()
        self.runner: Runner | None = None
        self.report_after = report_after
        self.incarnation = next(_incarnations)
        self.epoch = 0
        self._outbox: list[m.Result] = []
        self._outbox_lock = threading.Lock()  # sending under it keeps outcomes in order
        self.middleware = middleware or _NO_MIDDLEWARE
        self._tracebacks: dict[str, str] = {}

    def on_start(self) -> None:
        """Runs in this worker's thread; a process pool starts the worker's child here."""
        self.runner = self.pool.runner(self.lookup, self.board)
        self.thread = threading.current_thread()  # a hung one is counted by its system
        self.dispatcher.tell(m.WorkerJoined(self.name, self.incarnation))
        if self.middleware.on_worker_start:
            self.middleware.call(self.middleware.on_worker_start, self.name)

    def on_stop(self) -> None:
        """Runs in this worker's thread on a clean stop (not when it is abandoned while hung)."""
        if self.middleware.on_worker_stop:
            self.middleware.call(self.middleware.on_worker_stop, self.name)
        self._close_runner()

    def on_failure(self, *exc_info: Any) -> None:
        self.on_stop()

    def _close_runner(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            runner.close()
        if self._own_pool:
            self.pool.close()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Assign):
            if message.epoch == self.epoch:
                self._run(message.jobs, message.headers)
        elif isinstance(message, m.Reset):
            self.epoch = message.epoch
            self.dispatcher.tell(m.Ready(self.name, self.incarnation, self.epoch, 1))
        else:
            return super().on_receive(message)
        return None

    def _run(
        self,
        jobs: Sequence[tuple[str, int, str, bytes]],
        headers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        stopped = self.actor_stopped
        clock = self.clock
        middleware = self.middleware
        around = middleware.around_jobs
        grant = jobs if isinstance(jobs, Grant) else Grant(jobs)
        runner = self.runner
        assert runner is not None, "a worker runs jobs only between on_start and on_stop"
        while (job := grant.take()) is not None:
            job_id, attempt, task, payload = job
            if stopped.is_set():
                break  # replaced while hung: the new incarnation's jobs are not ours
            if around:
                run = JobRun(
                    job_id, attempt, task, self.name, (headers or {}).get(job_id, _NO_HEADERS)
                )
                middleware.call(middleware.before_job, run)
            started = clock.now()
            try:
                ok, value, error, lineage, trace = runner.run(job_id, attempt, task, payload)
            except BaseException as exc:
                self._report()
                raise WorkerLost(f"job {job_id} ended its worker: {exc!r}") from exc
            seconds = clock.now() - started
            if around:
                middleware.call(middleware.after_job, run, RunResult(ok, seconds, error, trace))
            with self._outbox_lock:
                self._outbox.append((job_id, attempt, ok, value, error, lineage, seconds))
                if trace is not None:
                    self._tracebacks[job_id] = trace
                first = len(self._outbox) == 1
            if seconds >= self.report_after:
                self._report()
            elif first and not grant.done:
                # If the next job turns out to be slow, this outcome leaves anyway
                # after `report_after`: the clock's thread reports it.
                self.clock.call_at(started + seconds + self.report_after, self._report)
        self._report()
        if stopped.is_set():
            self._close_runner()  # abandoned while hung: on_stop will not run

    def _report(self) -> None:
        """Send the outcomes not yet reported (from this worker's thread or the clock's)."""
        with self._outbox_lock:
            results, self._outbox = self._outbox, []
            tracebacks = None
            if self._tracebacks:
                tracebacks, self._tracebacks = self._tracebacks, {}
            if results and not self.actor_stopped.is_set():
                self.dispatcher.tell(
                    m.Finished(self.name, self.incarnation, self.epoch, results, tracebacks)
                )


def worker_factory(
    name: str,
    dispatcher: Any,
    lookup: Callable[[str], Any],
    board: ResultBoard,
    clock: Clock,
    pool: Pool,
    middleware: MiddlewareStack,
) -> Callable[[], Worker]:
    """What a supervisor calls to start (and restart) the worker `name`."""
    return lambda: Worker(
        name,
        dispatcher=dispatcher,
        lookup=lookup,
        board=board,
        clock=clock,
        pool=pool,
        middleware=middleware,
    )
