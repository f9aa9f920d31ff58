"""The Worker: runs the jobs it is assigned, in order, and reports outcomes.

Pull with credits: a worker only ever holds what it announced it could
take. Outcomes go back in batches; a batch is sent when the assignment is
done or when the oldest unsent outcome is `flush_after` seconds old, so a
long job never holds back the results of the short ones before it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pykka

from actorq import messages as m
from actorq.actors.board import ResultBoard
from actorq.context import JobContext, _current
from actorq.supervision.address import Address
from actorq.supervision.policy import exception_lineage

logger = logging.getLogger(__name__)

_incarnations = itertools.count(1)

Result = tuple[str, int, bool, Any, str | None, tuple[str, ...]]


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
        capacity: int = 32,
        flush_after: float = 0.002,
    ) -> None:
        super().__init__()
        self.name = name
        self.dispatcher = dispatcher
        self.lookup = lookup
        self.board = board
        self.capacity = capacity
        self.flush_after = flush_after
        self.incarnation = next(_incarnations)
        self.epoch = 0

    def on_start(self) -> None:
        self.dispatcher.tell(m.WorkerJoined(self.name, self.incarnation))

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Assign):
            if message.epoch == self.epoch:
                self._run(message.jobs)
        elif isinstance(message, m.Reset):
            self.epoch = message.epoch
            self.dispatcher.tell(m.Ready(self.name, self.incarnation, self.epoch, self.capacity))
        else:
            return super().on_receive(message)
        return None

    def _run(self, jobs: list[tuple[str, int, str, list[Any], dict[str, Any]]]) -> None:
        results: list[Result] = []
        oldest = 0.0
        stopped = self.actor_stopped
        for job_id, attempt, task, args, kwargs in jobs:
            if stopped.is_set():
                return  # replaced while hung: the new incarnation's jobs are not ours
            try:
                results.append(self._call(job_id, attempt, task, args, kwargs))
            except BaseException as exc:
                self._flush(results)
                raise WorkerLost(f"job {job_id} ended its worker: {exc!r}") from exc
            if len(results) == 1:
                oldest = time.monotonic()
            elif time.monotonic() - oldest >= self.flush_after:
                self._flush(results)
                results = []
        self._flush(results)

    def _call(
        self, job_id: str, attempt: int, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Result:
        fn = self.lookup(task)
        if fn is None:
            return (
                job_id,
                attempt,
                False,
                None,
                f"no task registered as {task!r}",
                ("actorq.UnknownTask",),
            )
        token = _current.set(JobContext(job_id, attempt, task, self.board))
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            return (
                job_id,
                attempt,
                False,
                None,
                f"{type(exc).__name__}: {exc}",
                exception_lineage(exc),
            )
        finally:
            _current.reset(token)
        if value is not None:
            try:
                # Results go to the journal: normalise them now, as a durable journal would.
                value = msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)
            except (TypeError, ValueError, OverflowError) as exc:
                error = f"result cannot be encoded with msgpack: {exc}"
                return (job_id, attempt, False, None, error, ("actorq.ResultNotSerializable",))
        return (job_id, attempt, True, value, None, ())

    def _flush(self, results: list[Result]) -> None:
        if results and not self.actor_stopped.is_set():
            self.dispatcher.tell(m.Finished(self.name, self.incarnation, self.epoch, results))
