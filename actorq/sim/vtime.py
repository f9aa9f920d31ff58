"""Virtual time for handlers: `now()` and `sleep()`, real outside a simulation.

A handler that runs inside a simulation runs on a `Fiber` (a greenlet, or
a thread with a baton), so that exactly one of the simulation loop and one
fiber runs at any moment. `sleep(s)` hands the baton back to the loop, which
resumes the fiber when the virtual clock reaches the wake-up time. Nothing
depends on how the OS schedules threads, so a run is deterministic.

An `async def` handler runs on an asyncio event loop whose clock is the
virtual clock and whose selector sleeps in virtual time, so `await
asyncio.sleep(...)` passes virtual time like `sleep` does.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

try:
    import greenlet as _greenlet
except ImportError:  # the `sim` extra is not installed: threads pass the baton instead
    _greenlet = None


class VirtualTime(Protocol):
    def wall(self) -> float:
        """The virtual `time.time()`."""

    def elapsed(self) -> float:
        """Virtual seconds since the start: monotonic, unlike `wall` across a clock jump."""

    def rng(self, purpose: str) -> random.Random:
        """The simulation's seeded random stream for `purpose`."""


_active: VirtualTime | None = None
_running: Fiber | None = None


class Killed(BaseException):
    """Raised inside a fiber whose worker was stopped, to unwind its handler."""


def activate(clock: VirtualTime | None) -> None:
    """Make `now()` and `sleep()` virtual (a simulation starts) or real again (None)."""
    global _active  # noqa: PLW0603  (one simulation runs at a time in a process)
    _active = clock


def active() -> bool:
    return _active is not None


def now() -> float:
    """`time.time()`, in virtual time inside a simulation."""
    clock = _active
    return time.time() if clock is None else clock.wall()


_unseeded = random.Random()


def rng(purpose: str = "user") -> random.Random:
    """A random stream: seeded from the simulation's seed inside one, unseeded outside."""
    clock = _active
    return _unseeded if clock is None else clock.rng(purpose)


def sleep(seconds: float) -> None:
    """`time.sleep()`, in virtual time inside a simulated handler."""
    fiber = _running
    if fiber is None:
        if _active is not None:
            raise RuntimeError("actorq.sim.sleep() inside a simulation only works in a handler")
        time.sleep(seconds)
        return
    fiber.suspend(seconds)


class Fiber:
    """Runs `fn` on its own stack, taking turns with the simulation loop.

    With greenlet installed (the `sim` extra) a fiber is a greenlet: a
    switch costs about a microsecond. Without it, a thread and two
    semaphores pass the baton, some tens of microseconds a switch.
    """

    __slots__ = (
        "_back",
        "_fn",
        "_go",
        "_green",
        "_kill",
        "_started",
        "_thread",
        "done",
        "error",
        "value",
        "wake_in",
    )

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._kill = False
        self._started = False
        self._green: Any = None
        self._thread: threading.Thread | None = None
        if _greenlet is not None:
            self._green = _greenlet.greenlet(self._body)
        else:
            self._go = threading.Semaphore(0)
            self._back = threading.Semaphore(0)
            self._thread = threading.Thread(
                target=self._threaded, name="actorq-sim-fiber", daemon=True
            )
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.wake_in = 0.0

    def _body(self) -> None:
        try:
            if self._kill:
                raise Killed
            self.value = self._fn()
        except BaseException as exc:  # the handler's failure is the job's outcome
            self.error = exc
        finally:
            self.done = True

    def _threaded(self) -> None:
        self._go.acquire()
        try:
            self._body()
        finally:
            self._back.release()

    def resume(self) -> bool:
        """Let the fiber run until it sleeps or ends; True once it has ended."""
        global _running  # noqa: PLW0603  (the one fiber that holds the baton)
        if self.done:
            return True
        outer, _running = _running, self
        try:
            if self._green is not None:
                self._green.switch()
            else:
                assert self._thread is not None
                if not self._started:
                    self._thread.start()
                self._go.release()
                self._back.acquire()
        finally:
            self._started = True
            _running = outer
        return self.done

    def suspend(self, seconds: float) -> None:
        """In the fiber: wait `seconds` of virtual time."""
        self.wake_in = max(0.0, float(seconds))
        # asyncio keeps its running loop and async-generator hooks per thread;
        # fibers share the thread, so a fiber takes its own along when it leaves.
        loop = asyncio.events._get_running_loop()
        hooks = sys.get_asyncgen_hooks()
        asyncio.events._set_running_loop(None)
        try:
            if self._green is not None:
                self._green.parent.switch()
            else:
                self._back.release()
                self._go.acquire()
        finally:
            asyncio.events._set_running_loop(loop)
            sys.set_asyncgen_hooks(*hooks)
        if self._kill:
            raise Killed

    def kill(self) -> None:
        """Unwind the handler (its worker died); returns once it has ended."""
        if self.done:
            return
        if not self._started:
            self.done = True
            return
        self._kill = True
        self.resume()
        if self._thread is not None:
            self._thread.join()


class _VirtualSelector(selectors.SelectSelector):
    """Waiting for I/O means waiting for the next timer, in virtual time."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("an async handler waits for something no timer will bring")
        if timeout > 0:
            sleep(timeout)
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    def time(self) -> float:
        clock = _active
        return time.monotonic() if clock is None else clock.elapsed()


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on a loop whose clock is the virtual clock."""
    loop = _VirtualLoop(_VirtualSelector())
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
