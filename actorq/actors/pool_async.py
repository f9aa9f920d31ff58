"""One event loop thread per pool, for `async def` tasks.

A worker thread that calls an `async def` task gets a coroutine; it hands
it to this loop and waits for its outcome, so coroutines of all workers
run concurrently on one thread while each worker still holds one job.

Timeouts and cancellation: the deadline lives in the Dispatcher (it may be
per job), which flags the job cancelled when it passes or when the job is
cancelled; the flag cancels the asyncio task at once (`Task.cancel`), the
coroutine sees `CancelledError` at its next await, and the worker reports
when it has unwound. A coroutine that swallows the cancellation keeps its
worker, as a hung thread would, until the Dispatcher replaces the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from actorq.actors.board import ResultBoard
from actorq.actors.execution import CANCELLED, Outcome, in_job
from actorq.context import JobContext


class EventLoopThread:
    """An asyncio loop on a daemon thread, started on first use."""

    def __init__(self, name: str = "actorq-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(
        self, coroutine: Coroutine[Any, Any, Any], context: JobContext, board: ResultBoard
    ) -> Outcome:
        """Run the job's coroutine to its end; cancel it when the job is flagged cancelled."""
        loop = self._started()
        done: concurrent.futures.Future[Outcome] = concurrent.futures.Future()
        tasks: list[asyncio.Task[Outcome]] = []

        def start() -> None:
            task = loop.create_task(in_job(context, coroutine))
            task.add_done_callback(lambda t: done.set_result(_outcome_of(t, coroutine)))
            tasks.append(task)

        def cancel_in_loop() -> None:
            tasks[0].cancel()

        def cancel() -> None:
            # Runs after start(), which made the task: call_soon_threadsafe keeps the order.
            loop.call_soon_threadsafe(cancel_in_loop)

        loop.call_soon_threadsafe(start)
        if not board.watch(context.id, cancel):
            cancel()  # flagged before it started
        try:
            return done.result()
        finally:
            board.unwatch(context.id)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        # Stopping: what still runs is cancelled and unwinds, so no worker waits forever.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    finally:
        loop.close()


def _outcome_of(task: asyncio.Task[Outcome], coroutine: Coroutine[Any, Any, Any]) -> Outcome:
    if task.cancelled():  # cancelled before its first step: `in_job` never ran
        coroutine.close()
        error = "CancelledError: the job was cancelled before it started"
        return False, None, error, CANCELLED, None
    return task.result()
