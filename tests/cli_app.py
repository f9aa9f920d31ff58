"""An ActorSystem for the CLI tests, loaded by `actorq worker tests.cli_app:system`.

The slow task waits for a file the test creates, so a test controls when a
job in flight finishes (never a sleep), with a bound so nothing hangs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from actorq import ActorSystem, RestartPolicy

system = ActorSystem(workers=2, journal="memory", queues=("default", "bulk"))


@system.task("add")
def add(a: int, b: int) -> int:
    return a + b


@system.task("fail", policy=RestartPolicy(max_restarts=0))
def fail(message: str = "boom") -> None:
    raise RuntimeError(message)


@system.task("fail_when", policy=RestartPolicy(max_restarts=0))
def fail_when(flag: str, limit: float = 20.0) -> None:
    """Fail once the file `flag` exists (up to `limit` s): the test decides when."""
    deadline = time.monotonic() + limit
    while not Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    raise RuntimeError("on purpose")


@system.task("slow")
def slow(directory: str, limit: float = 20.0) -> str:
    """Mark itself started, wait for `release` to appear (up to `limit` s), then write `done`."""
    folder = Path(directory)
    (folder / "started").write_text(str(os.getpid()))
    deadline = time.monotonic() + limit
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    (folder / "done").write_text("finished")
    return "done"
