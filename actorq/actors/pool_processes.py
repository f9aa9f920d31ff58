"""The process pool: each Worker runs its jobs in a child process of its own.

The Worker actor stays the Dispatcher's unit (it takes grants, reports
outcomes, is replaced when a job hangs); only the call moves to its child,
so CPU-bound tasks use every core, and a job can be stopped for real.

How children start: `forkserver` (spawn where there is none), never plain
`fork`. The parent runs many threads (actors, the clock, the journal), and a
fork copies whatever locks they hold at that instant (logging's, an
allocator's) into a child that has no thread to release them; the fork
server is a small single-threaded process that forks clean children in a
few milliseconds, which keeps recycling (`max_jobs_per_child`) cheap. A
child imports the modules of the registered tasks itself (see `pool_child`);
multiprocessing transfers only the bootstrap (the child's entry point and its
pipe), and jobs and outcomes cross that pipe as msgpack bytes.

What the parent does about a child:
- the job is flagged cancelled (it timed out, or `cancel()`): SIGKILL, then
  report the attempt failed; whatever the handler would have done next
  never happens;
- the child died on its own mid-job (os._exit, a signal, the OOM killer):
  the attempt failed with `WorkerProcessDied`, retried or dead-lettered by
  the job's policy; the next job gets a new child;
- it ran `max_jobs_per_child` jobs: its pipe is closed (it exits) and a new
  child starts at once, before the next job needs it.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

import msgpack

from actorq.actors import pool_child
from actorq.actors.board import ResultBoard
from actorq.actors.execution import CANCELLED, UNKNOWN_TASK, Outcome, unknown
from actorq.errors import TaskNotImportable, WorkerProcessDied
from actorq.supervision.policy import exception_lineage

logger = logging.getLogger(__name__)

DIED = exception_lineage(WorkerProcessDied())

Lookup = Callable[[str], Callable[..., Any] | None]


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def where(name: str, fn: Callable[..., Any]) -> tuple[str, str]:
    """(module, qualified name) of a task's function, if a child could import it by them."""
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        raise TaskNotImportable(name, f"{fn!r} has no module and qualified name")
    if "<" in qualname:
        raise TaskNotImportable(
            name, f"{qualname!r} is not defined at the top level of module {module_name!r}"
        )
    return module_name, qualname


def location(name: str, fn: Callable[..., Any]) -> tuple[str, str]:
    """Where a child finds task `name`: (module, qualified name); TaskNotImportable if nowhere."""
    module_name, qualname = where(name, fn)
    try:
        found = pool_child.locate(module_name, qualname)
    except LookupError as exc:
        raise TaskNotImportable(name, str(exc)) from None
    if found is not fn:
        raise TaskNotImportable(name, f"{module_name}.{qualname} is another object")
    return module_name, qualname


class ProcessPool:
    """Children for the workers of one system; every one of them is killed at close()."""

    def __init__(
        self, tasks: Callable[[], list[str]], max_jobs_per_child: int | None = None
    ) -> None:
        if max_jobs_per_child is not None and max_jobs_per_child < 1:
            raise ValueError("max_jobs_per_child must be at least 1 (or None: no limit)")
        self.tasks = tasks
        self.max_jobs_per_child = max_jobs_per_child
        self.context: BaseContext = multiprocessing.get_context(start_method())
        if start_method() == "forkserver":
            self.context.set_forkserver_preload(["actorq.actors.pool_child"])
        self._lock = threading.Lock()
        self._children: set[BaseProcess] = set()
        self._closed = False

    def runner(self, lookup: Lookup, board: ResultBoard) -> ProcessRunner:
        return ProcessRunner(self, lookup, board)

    def spawn(self, lookup: Lookup, name: str) -> _Child:
        parent_end, child_end = self.context.Pipe(duplex=True)
        process = self.context.Process(  # type: ignore[attr-defined]
            target=pool_child.main, args=(child_end,), name=name, daemon=True
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("the process pool is closed")
            process.start()
            self._children = {p for p in self._children if p.exitcode is None}
            self._children.add(process)
        child_end.close()
        child = _Child(process, parent_end)
        child.define(lookup, self.tasks())  # the child imports them while it waits for work
        return child

    def retire(self, child: _Child, *, kill: bool) -> None:
        """Kill a child (and wait for it to be gone), or let it exit by closing its input."""
        child.conn.close()
        if kill:
            child.process.kill()
            child.process.join()
            with self._lock:
                self._children.discard(child.process)
        # A child let go exits on its own in a moment; close() kills it if it has not.

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._children = self._children, set()
        for process in children:
            process.kill()
        for process in children:
            process.join()


class _Child:
    __slots__ = ("conn", "jobs", "known", "process")

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.jobs = 0
        self.known: set[str] = set()

    def define(self, lookup: Lookup, names: list[str]) -> None:
        """Tell the child where the tasks it does not know yet are defined."""
        table = []
        for name in names:
            fn = lookup(name)
            if fn is None or name in self.known:
                continue
            try:
                table.append([name, *location(name, fn)])
            except TaskNotImportable:
                continue  # the child finds nothing either, and says why when asked to run it
            self.known.add(name)
        if table:
            self.conn.send_bytes(msgpack.packb(["tasks", table], use_bin_type=True))

    def describe_death(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exit code {code}"
        return f"WorkerProcessDied: the worker process (pid {self.process.pid}) died ({how})"


class ProcessRunner:
    """One worker incarnation's side of its child: send a job, wait for its answer or its end."""

    def __init__(self, pool: ProcessPool, lookup: Lookup, board: ResultBoard) -> None:
        self.pool = pool
        self.lookup = lookup
        self.board = board
        self.name = f"actorq-pool-{threading.current_thread().name}"
        # The job whose child a cancel flag may kill, and the one it killed; the flag comes
        # from the Dispatcher's thread, so a late flag must not hit the next job's child.
        self._lock = threading.Lock()
        self._running: tuple[str, _Child] | None = None
        self._killed: str | None = None
        self.child: _Child | None = pool.spawn(lookup, self.name)

    def run(self, job_id: str, attempt: int, task: str, payload: bytes) -> Outcome:
        fn = self.lookup(task)
        if fn is None:
            return unknown(task)
        if self.child is None or task not in self.child.known:
            try:  # registered after start: checked here, as start() checked the others
                location(task, fn)
            except TaskNotImportable as exc:
                return False, None, f"TaskNotImportable: {exc}", UNKNOWN_TASK, None
        child = self._send(["run", job_id, attempt, task, payload], task)
        if child is None:
            error = "WorkerProcessDied: no worker process could be started"
            return False, None, error, DIED, None
        with self._lock:
            self._running, self._killed = (job_id, child), None
        if not self.board.watch(job_id, lambda: self._kill(job_id)):
            self._kill(job_id)  # flagged before it started
        try:
            outcome = self._wait(child)
        finally:
            self.board.unwatch(job_id)
            with self._lock:
                self._running = None
        if outcome is not None:
            if self._killed == job_id:  # it answered just before the kill: that child is gone
                if self.child is child:
                    self.child = None
                self.pool.retire(child, kill=True)
            return outcome
        self.child = None
        if self._killed == job_id:
            self.pool.retire(child, kill=True)
            logger.info("job %s was cancelled or timed out: its worker process was killed", job_id)
            error = "CancelledError: the job was cancelled or timed out; its process was killed"
            return False, None, error, CANCELLED, None
        error = child.describe_death()
        self.pool.retire(child, kill=True)
        logger.warning("job %s: %s", job_id, error)
        return False, None, error, DIED, None

    def _wait(self, child: _Child) -> Outcome | None:
        """The child's answer, or None if it died (or was killed) first."""
        wait([child.conn, child.process.sentinel])
        try:
            ok, value, error, lineage, trace = msgpack.unpackb(child.conn.recv_bytes(), raw=False)
        except (EOFError, OSError):
            return None
        child.jobs += 1
        limit = self.pool.max_jobs_per_child
        if limit is not None and child.jobs >= limit and self.child is child:
            self.pool.retire(child, kill=False)
            self.child = self.pool.spawn(self.lookup, self.name)
        return ok, value, error, tuple(lineage), trace

    def _kill(self, job_id: str) -> None:
        """Runs in the Dispatcher's thread: SIGKILL the child if it still runs `job_id`."""
        with self._lock:
            if self._running is None or self._running[0] != job_id:
                return
            self._killed = job_id
            self._running[1].process.kill()

    def _send(self, message: list[Any], task: str) -> _Child | None:
        """Send to a live child; a child that died between jobs is replaced, the job unstarted."""
        for _ in range(2):
            child = self.child or self.pool.spawn(self.lookup, self.name)
            self.child = child
            try:
                if task not in child.known:
                    child.define(self.lookup, [task])
                child.conn.send_bytes(msgpack.packb(message, use_bin_type=True))
                return child
            except OSError:
                self.child = None
                self.pool.retire(child, kill=True)
        return None

    def close(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            self.pool.retire(child, kill=False)
