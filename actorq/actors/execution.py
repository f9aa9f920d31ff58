"""Calling one task and turning what happened into an outcome; shared by every pool.

A worker thread, the event loop and a pool's child process all run a job
the same way: decode the msgpack payload, call the registered function
with `current_job()` set, encode the value once with msgpack (the journal
stores those bytes and the caller decodes them). An `async def` task's
call returns a coroutine, which the pool hands to its event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from actorq.context import JobContext, _current
from actorq.core.job import pack, unpack
from actorq.supervision.policy import exception_lineage

# (ok, msgpack-encoded value, error text, error lineage, traceback): a Result without
# its ids and time, plus the failure's traceback for the job's history.
Outcome = tuple[bool, bytes | None, str | None, tuple[str, ...], str | None]

# A failure keeps its traceback in the journal and the job's record: the last
# frames (where it was raised) and at most this many characters of them.
TRACEBACK_FRAMES = 30
TRACEBACK_CHARS = 8192

UNKNOWN_TASK = ("actorq.UnknownTask",)
NOT_SERIALIZABLE = ("actorq.ResultNotSerializable",)
CANCELLED = exception_lineage(asyncio.CancelledError())

RunCoroutine = Callable[[Coroutine[Any, Any, Any], JobContext], Outcome]


class Runner(Protocol):
    """Runs a worker's jobs one at a time; built per worker incarnation by its Pool."""

    def run(self, job_id: str, attempt: int, task: str, payload: bytes) -> Outcome: ...

    def close(self) -> None:
        """Release what the runner holds (a child process); called from the worker's thread."""


class Pool(Protocol):
    """Where and how jobs run: in the worker threads, or in child processes."""

    def runner(self, lookup: Callable[[str], Callable[..., Any] | None], board: Any) -> Runner: ...

    def close(self) -> None:
        """Stop everything the pool started (loop thread, children); the system is stopping."""


def bounded_traceback(exc: BaseException) -> str:
    """The exception's traceback, its last frames, cut to `TRACEBACK_CHARS` from the end."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # start at the handler, not at the runner that called it
    text = "".join(traceback.format_exception(type(exc), exc, tb, limit=-TRACEBACK_FRAMES))
    if len(text) <= TRACEBACK_CHARS:
        return text
    marker = f"[... {len(text) - TRACEBACK_CHARS} characters cut ...]\n"
    return marker + text[len(text) - TRACEBACK_CHARS + len(marker) :]


def unknown(task: str) -> Outcome:
    return False, None, f"no task registered as {task!r}", UNKNOWN_TASK, None


def failed(exc: BaseException) -> Outcome:
    error = f"{type(exc).__name__}: {exc}"
    return False, None, error, exception_lineage(exc), bounded_traceback(exc)


def encoded(value: Any) -> Outcome:
    try:
        return True, pack(value), None, (), None
    except (TypeError, ValueError, OverflowError) as exc:
        error = f"result cannot be encoded with msgpack: {exc}"
        return False, None, error, NOT_SERIALIZABLE, None


def call(
    fn: Callable[..., Any], context: JobContext, payload: bytes, run_coroutine: RunCoroutine
) -> Outcome:
    """Run `fn` on the job's arguments; BaseExceptions (SystemExit) propagate to the caller."""
    token = _current.set(context)
    try:
        args, kwargs = unpack(payload)
        value = fn(*args, **kwargs)
    except Exception as exc:
        return failed(exc)
    finally:
        _current.reset(token)
    if inspect.iscoroutine(value):
        return run_coroutine(value, context)
    return encoded(value)


async def in_job(context: JobContext, coroutine: Coroutine[Any, Any, Any]) -> Outcome:
    """Await a task's coroutine as the job `context` (each asyncio task has its own context)."""
    _current.set(context)
    try:
        value = await coroutine
    except asyncio.CancelledError:
        return False, None, "CancelledError: the job was cancelled or timed out", CANCELLED, None
    except BaseException as exc:  # SystemExit in a coroutine fails the job, not the loop
        return failed(exc)
    return encoded(value)
