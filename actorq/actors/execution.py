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
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from actorq.context import JobContext, _current
from actorq.core.job import pack, unpack
from actorq.supervision.policy import exception_lineage

# (ok, msgpack-encoded value, error text, error lineage): a Result without its ids and time.
Outcome = tuple[bool, bytes | None, str | None, tuple[str, ...]]

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


def unknown(task: str) -> Outcome:
    return False, None, f"no task registered as {task!r}", UNKNOWN_TASK


def failed(exc: BaseException) -> Outcome:
    return False, None, f"{type(exc).__name__}: {exc}", exception_lineage(exc)


def encoded(value: Any) -> Outcome:
    try:
        return True, pack(value), None, ()
    except (TypeError, ValueError, OverflowError) as exc:
        return False, None, f"result cannot be encoded with msgpack: {exc}", NOT_SERIALIZABLE


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
        return False, None, "CancelledError: the job was cancelled or timed out", CANCELLED
    except BaseException as exc:  # SystemExit in a coroutine fails the job, not the loop
        return failed(exc)
    return encoded(value)
