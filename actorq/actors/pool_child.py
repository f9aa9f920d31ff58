"""The loop a process pool's child runs: msgpack jobs in, msgpack outcomes out.

The parent tells the child where each task it may run is defined, as
(registered name, module, qualified name) - the registry's view of its own
functions, never anything from a job - and the child imports the module and
finds the function, exactly as Python finds it when a user imports it. Jobs
then name a task by its registered name only, and carry the payload bytes
the journal holds. Messages on the pipe:

    parent -> child   ["tasks", [[name, module, qualname], ...]]
                      ["run", job id, attempt, task name, payload]
    child -> parent   [ok, value bytes, error, lineage, traceback]   (one per "run")

End of input (the parent closed its end, or died) ends the child. A
cancelled or timed-out job's child is killed, so nothing here is ever
flagged cancelled; `current_job()` works as in a thread.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection, wait
from typing import Any

import msgpack

from actorq.actors.board import ResultBoard
from actorq.actors.execution import UNKNOWN_TASK, Outcome, call, in_job
from actorq.context import JobContext


def locate(module_name: str, qualname: str) -> Callable[..., Any]:
    """The function at `module_name`.`qualname` (a registered Task's own function); LookupError."""
    if "<" in qualname:
        raise LookupError(f"{qualname!r} is not defined at the top level of module {module_name!r}")
    if module_name == "__main__" and getattr(sys.modules["__main__"], "__file__", None) is None:
        raise LookupError("it is defined in an interactive session, which no child can import")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # an import error of any kind is the user's module failing
        raise LookupError(f"importing module {module_name!r} failed: {exc!r}") from exc
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LookupError(f"module {module_name!r} has no attribute {qualname!r}") from None
    from actorq.tasks import Task

    fn = target.fn if isinstance(target, Task) else target
    if not callable(fn):
        raise LookupError(f"{module_name}.{qualname} is not callable")
    return fn


def main(conn: Connection) -> None:
    """Serve jobs from `conn` until it closes."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    board = ResultBoard()
    tasks: dict[str, Callable[..., Any] | str] = {}
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        message = msgpack.unpackb(data, raw=False)
        if message[0] == "tasks":
            for name, module_name, qualname in message[1]:
                try:
                    tasks[name] = locate(module_name, qualname)
                except LookupError as exc:
                    tasks[name] = str(exc)
            continue
        _, job_id, attempt, task, payload = message
        fn = tasks.get(task)
        outcome: Outcome
        if fn is None:
            outcome = False, None, f"no task registered as {task!r}", UNKNOWN_TASK, None
        elif isinstance(fn, str):
            outcome = (
                False,
                None,
                f"task {task!r} is not defined in a worker process: {fn}",
                UNKNOWN_TASK,
                None,
            )
        else:
            outcome = call(fn, JobContext(job_id, attempt, task, board), payload, _await)
        conn.send_bytes(msgpack.packb(list(outcome), use_bin_type=True))


def _await(coroutine: Coroutine[Any, Any, Any], context: JobContext) -> Outcome:
    return asyncio.run(in_job(context, coroutine))


def _die_with_parent() -> None:
    """SIGKILL this child as soon as the worker process is gone, so no job outlives its node.

    A child's own parent is the fork server, which outlives the worker while
    children hold it open; multiprocessing hands each child a sentinel of the
    process that started it instead, which a small thread here waits on.
    Without it a job in flight would run on, and do its side effects, while
    another node runs it again.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="actorq-parent-watch", daemon=True).start()
