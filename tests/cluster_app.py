"""The ActorSystem the cluster tests run as nodes (``actorq worker tests.cluster_app:system``).

Handlers append a line to a ledger file per process (``ACTORQ_TEST_LEDGER``
names the directory) before they return, so a test counts how often each
job really ran, whichever node ran it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from actorq import ActorSystem, RestartPolicy, current_job

system = ActorSystem(workers=2, journal="memory", queues=("default", "bulk"))


def _record(kind: str, key: str) -> None:
    ledger = os.environ.get("ACTORQ_TEST_LEDGER")
    if not ledger:
        return
    line = f"{kind} {key} {current_job().attempt} {os.getpid()}\n".encode()
    fd = os.open(Path(ledger) / f"{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@system.task("add")
def add(a: int, b: int) -> int:
    return a + b


@system.task("noop")
def noop() -> None:
    return None


@system.task("fail", policy=RestartPolicy(max_restarts=0))
def fail(message: str = "boom") -> None:
    raise RuntimeError(message)


@system.task("alo")
def alo(key: str) -> str:
    time.sleep(0.005)  # simulated work, so that kills find jobs in flight
    _record("alo", key)
    return key


@system.task("amo", delivery="at_most_once", policy=RestartPolicy(max_restarts=0))
def amo(key: str) -> str:
    time.sleep(0.005)
    _record("amo", key)
    return key


def _hold(kind: str, key: str, flags: str) -> int:
    """Record the start, wait for the file ``flags/key`` (30 s at most), record the end."""
    _record(f"{kind}-start", key)
    flag = Path(flags) / key
    deadline = time.monotonic() + 30
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    _record(f"{kind}-end", key)
    return os.getpid()


@system.task("hold", policy=RestartPolicy(max_restarts=3))
def hold(key: str, flags: str) -> int:
    return _hold("hold", key, flags)


@system.task("hold_amo", delivery="at_most_once", policy=RestartPolicy(max_restarts=0))
def hold_amo(key: str, flags: str) -> int:
    return _hold("hold_amo", key, flags)
