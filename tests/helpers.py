"""Small helpers shared by the tests: waiting on conditions, never on sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from actorq import ActorSystem

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.005) -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


MakeSystem = Callable[..., ActorSystem]  # the `make_system` fixture: options -> ActorSystem
