"""Task functions for the process-pool tests, defined at module level so children import them.

Handlers that wait do so on files the test creates (never a sleep in the
test itself); a handler that hangs past its timeout sleeps in its own child.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def pid() -> int:
    return os.getpid()


def burn(n: int) -> int:
    """Pure-Python CPU work."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def hang_then_write(directory: str, seconds: float) -> str:
    """Record its pid, outlive its timeout, then write `late` (which must never appear)."""
    folder = Path(directory)
    (folder / "pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    (folder / "late").write_text("the side effect after the deadline")
    return "too late"


def exit_first_attempt(directory: str) -> str:
    """Die abruptly on the first attempt (no exception, no cleanup); succeed on the next."""
    marker = Path(directory) / "attempted"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(13)
    return "second life"


def always_exit() -> None:
    os._exit(7)


def wait_for_file(path: str, limit: float = 20.0) -> str:
    """Mark itself started (path + '.started'), then wait for `path` to appear."""
    Path(path + ".started").write_text(str(os.getpid()))
    deadline = time.monotonic() + limit
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


def unencodable() -> object:
    return object()


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


if multiprocessing.parent_process() is None:
    # Defined in the parent only: a child importing this module finds no such function.

    def parent_only() -> str:
        return "parent"
