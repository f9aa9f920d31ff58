"""The thread pool (the default): each Worker runs its jobs in its own thread.

Cheapest per job (no copy, no process hop) and right for I/O-bound work; a
CPU-bound task shares one GIL with every other worker (use the process
pool), and a hung handler cannot be killed: its worker is replaced and its
late answer fenced. `async def` tasks run on the pool's one event loop thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorq.actors.board import ResultBoard
from actorq.actors.execution import Outcome, call, unknown
from actorq.actors.pool_async import EventLoopThread
from actorq.context import JobContext


class ThreadPool:
    def __init__(self) -> None:
        self.loop = EventLoopThread()

    def runner(
        self, lookup: Callable[[str], Callable[..., Any] | None], board: ResultBoard
    ) -> ThreadRunner:
        return ThreadRunner(lookup, board, self.loop)

    def close(self) -> None:
        self.loop.close()


class ThreadRunner:
    __slots__ = ("board", "lookup", "loop")

    def __init__(
        self,
        lookup: Callable[[str], Callable[..., Any] | None],
        board: ResultBoard,
        loop: EventLoopThread,
    ) -> None:
        self.lookup = lookup
        self.board = board
        self.loop = loop

    def run(self, job_id: str, attempt: int, task: str, payload: bytes) -> Outcome:
        fn = self.lookup(task)
        if fn is None:
            return unknown(task)
        return call(fn, JobContext(job_id, attempt, task, self.board), payload, self._await)

    def _await(self, coroutine: Any, context: JobContext) -> Outcome:
        return self.loop.run(coroutine, context, self.board)

    def close(self) -> None:
        pass  # the loop is the pool's, closed with it
