"""A fault plan: which faults happen when, each drawn from the simulation's seeded RNG.

Every fault has a time window (virtual seconds after the start; `end=inf`
means to the end of the run) and a rate or a probability. The plan also
answers the fault hooks in the product code (`actorq.faults`) while its
simulation runs: journal appends that fail, outages, crashes in the middle
of a group commit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from actorq.errors import JournalUnavailable
from actorq.faults import SimulatedCrash

Draw = float | Callable[[random.Random], float]

INF = math.inf


def draw(value: Draw, rng: random.Random) -> float:
    return value(rng) if callable(value) else float(value)


@dataclass(frozen=True, slots=True)
class Window:
    start: float = 0.0
    end: float = INF

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class HandlerFault:
    """Per execution of `task` (None: any task) in the window, with probability `p`."""

    kind: str  # "error", "latency", "crash", "hang", "slow"
    task: str | None
    p: float
    window: Window
    amount: Draw = 0.0  # latency / pause in seconds
    error: str = "ConnectionError"


@dataclass
class FaultPlan:
    handler: list[HandlerFault] = field(default_factory=list)
    dispatcher_crash_at: list[float] = field(default_factory=list)
    dispatcher_crash_every: list[tuple[float, Window]] = field(default_factory=list)
    commit_crash: list[tuple[float, Window]] = field(default_factory=list)
    append_failure: list[tuple[float, Window]] = field(default_factory=list)
    journal_latency: Draw = 0.0
    outages: list[Window] = field(default_factory=list)
    clock_jumps: list[tuple[float, float]] = field(default_factory=list)
    worker_crash_at: list[tuple[float, str | None]] = field(default_factory=list)

    # -- declaring faults ---------------------------------------------------------

    def handler_errors(
        self,
        task: str | None = None,
        *,
        rate: float,
        start: float = 0.0,
        end: float = INF,
        error: str = "ConnectionError",
    ) -> FaultPlan:
        """A fraction `rate` of executions raise `error` (an exception class name)."""
        self.handler.append(HandlerFault("error", task, rate, Window(start, end), error=error))
        return self

    def latency(
        self,
        task: str | None = None,
        *,
        extra: Draw,
        p: float = 1.0,
        start: float = 0.0,
        end: float = INF,
    ) -> FaultPlan:
        """Executions take `extra` seconds longer (a number or a function of the RNG)."""
        self.handler.append(HandlerFault("latency", task, p, Window(start, end), amount=extra))
        return self

    def worker_crashes(self, *, p: float, start: float = 0.0, end: float = INF) -> FaultPlan:
        """An execution kills its worker with probability `p` (the in-flight job is lost)."""
        self.handler.append(HandlerFault("crash", None, p, Window(start, end)))
        return self

    def crash_worker(self, at: float, worker: str | None = None) -> FaultPlan:
        """Kill a worker (a random one if None) at virtual time `at`."""
        self.worker_crash_at.append((at, worker))
        return self

    def worker_hangs(self, *, p: float, start: float = 0.0, end: float = INF) -> FaultPlan:
        """An execution of a job with a timeout never returns; the worker is replaced."""
        self.handler.append(HandlerFault("hang", None, p, Window(start, end)))
        return self

    def slow_workers(
        self, *, p: float, pause: Draw, start: float = 0.0, end: float = INF
    ) -> FaultPlan:
        """A worker pauses `pause` seconds mid-job, then reports (late, if it was replaced)."""
        self.handler.append(HandlerFault("slow", None, p, Window(start, end), amount=pause))
        return self

    def dispatcher_crashes(
        self,
        *,
        at: tuple[float, ...] = (),
        every: float | None = None,
        start: float = 0.0,
        end: float = INF,
        mid_commit: float = 0.0,
    ) -> FaultPlan:
        """Crash the Dispatcher at times `at`, and/or on average `every` seconds.

        `mid_commit`: the probability that a group commit is cut by a crash
        (events staged, not durable: nobody waiting on them was answered).
        """
        self.dispatcher_crash_at.extend(at)
        window = Window(start, end)
        if every is not None:
            self.dispatcher_crash_every.append((every, window))
        if mid_commit:
            self.commit_crash.append((mid_commit, window))
        return self

    def journal_failures(self, *, rate: float, start: float = 0.0, end: float = INF) -> FaultPlan:
        """A fraction of journal appends fail (JournalUnavailable); the writer restarts."""
        self.append_failure.append((rate, Window(start, end)))
        return self

    def journal_delay(self, latency: Draw) -> FaultPlan:
        """Each journal append takes `latency` seconds, during which the writer is busy."""
        self.journal_latency = latency
        return self

    def outage(self, start: float, end: float) -> FaultPlan:
        """The journal (for a Redis journal: Redis) cannot be reached in this window."""
        self.outages.append(Window(start, end))
        return self

    def clock_jump(self, at: float, by: float) -> FaultPlan:
        """The wall clock jumps by `by` seconds at `at` (timers run on elapsed time)."""
        self.clock_jumps.append((at, by))
        return self

    # -- reading the plan ------------------------------------------------------------

    @property
    def quiet_after(self) -> float:
        """When the last fault ends (inf if one never does): liveness is judged after it."""
        ends = [f.window.end for f in self.handler]
        ends += [w.end for _, w in self.dispatcher_crash_every + self.commit_crash]
        ends += [w.end for _, w in self.append_failure] + [w.end for w in self.outages]
        ends += self.dispatcher_crash_at + [t for t, _ in self.clock_jumps]
        ends += [t for t, _ in self.worker_crash_at]
        return max(ends, default=0.0)

    def execution_faults(self, task: str, t: float) -> list[HandlerFault]:
        return [f for f in self.handler if (f.task is None or f.task == task) and t in f.window]


class Injector:
    """Answers `actorq.faults` hooks from a plan, the clock and a seeded RNG."""

    def __init__(
        self, plan: FaultPlan, clock: Callable[[], float], rng: random.Random, file_journal: bool
    ) -> None:
        self.plan = plan
        self.clock = clock
        self.rng = rng
        self.file_journal = file_journal
        self.injected: list[tuple[float, str, str]] = []

    def _note(self, point: str, key: str) -> None:
        self.injected.append((self.clock(), point, key))

    def fault(self, point: str, key: str) -> BaseException | None:
        t = self.clock()
        plan = self.plan
        if point in ("journal.append", "journal.read"):
            if any(t in w for w in plan.outages):
                self._note(point, "outage")
                return JournalUnavailable(f"simulated outage at {t:.3f}s")
            if point == "journal.read":
                return None
            for rate, window in plan.append_failure:
                if t in window and self.rng.random() < rate:
                    self._note(point, "failure")
                    return JournalUnavailable(f"simulated append failure at {t:.3f}s")
            if key == "dispatcher" and not self.file_journal:
                for p, window in plan.commit_crash:
                    if t in window and self.rng.random() < p:
                        self._note(point, "crash")
                        return SimulatedCrash(f"dispatcher crashed mid group commit at {t:.3f}s")
        return None

    def torn(self, point: str, key: str, size: int) -> int | None:
        if point != "journal.write" or key != "dispatcher":
            return None
        t = self.clock()
        for p, window in self.plan.commit_crash:
            if t in window and self.rng.random() < p:
                self._note(point, "torn")
                return self.rng.randrange(0, size)
        return None
