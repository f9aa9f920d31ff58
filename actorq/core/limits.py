"""Start limits decided by the Dispatcher: per-task rate limits and per-queue retry budgets.

Both are decided when a job would be handed to a worker, in the one
Dispatcher, so they hold however many workers there are. A job held back
by a limit stays queued (its status does not change and nothing is
journaled): it is parked here, in priority order, and put back into its
queue when the limit has room again (a timer, or new first attempts for a
retry budget). Parking is physical state, like the ready heaps: after a
restart the jobs are parked again as needed. What the limits count is
rebuilt at recovery from the start times in the jobs' attempt history
(`restore`), so a restart or a failover does not open a window anew.

A rate limit is a sliding log rather than a token bucket: "at most N
starts in any window of `per` seconds" then holds exactly, where a bucket
of N tokens refilled at N per period admits up to 2N starts in a window
that straddles a refill. It keeps the last N start times per task.

A retry budget (Google SRE book, "Handling Overload": retries at most 10 %
of requests) counts first attempts and retries in slots of a tenth of the
window; a retry may start while the retries in the window are fewer than
`fraction` of the first attempts, or than `minimum` (so that a lone failing
job on a quiet queue still gets its retries, as Finagle's RetryBudget does).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from dataclasses import dataclass

from actorq.errors import InvalidLimit

SLOTS = 10  # a retry budget's window is counted in this many slots


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `starts` starts of a task in any window of `per` seconds."""

    starts: int
    per: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.starts, int) or isinstance(self.starts, bool) or self.starts < 1:
            raise InvalidLimit(f"rate limit starts must be a positive integer, not {self.starts!r}")
        if (
            not isinstance(self.per, int | float)
            or isinstance(self.per, bool)
            or not math.isfinite(self.per)
            or self.per <= 0
        ):
            raise InvalidLimit(
                f"rate limit period must be a positive number of seconds, not {self.per!r}"
            )


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Retries in a queue at most `fraction` of its first attempts over `window` seconds."""

    fraction: float = 0.1
    window: float = 60.0
    minimum: int = 10

    def __post_init__(self) -> None:
        if (
            not isinstance(self.fraction, int | float)
            or isinstance(self.fraction, bool)
            or not 0.0 <= self.fraction <= 1.0
        ):
            raise InvalidLimit(
                f"retry budget fraction must be within [0, 1], not {self.fraction!r}"
            )
        if (
            not isinstance(self.window, int | float)
            or isinstance(self.window, bool)
            or not math.isfinite(self.window)
            or self.window <= 0
        ):
            raise InvalidLimit(
                f"retry budget window must be a positive number of seconds, not {self.window!r}"
            )
        if not isinstance(self.minimum, int) or isinstance(self.minimum, bool) or self.minimum < 0:
            raise InvalidLimit(
                f"retry budget minimum must be a non-negative integer, not {self.minimum!r}"
            )


class StartLog:
    """The last `starts` start times of one rate-limited task."""

    __slots__ = ("limit", "times")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.times: deque[float] = deque(maxlen=limit.starts)

    def room(self, now: float) -> int:
        """How many more starts the window allows at `now`."""
        times, per = self.times, self.limit.per
        free = self.limit.starts - len(times)
        for at in times:
            if now - at < per:
                break
            free += 1
        return free

    def next_room(self) -> float:
        return self.times[0] + self.limit.per


class BudgetWindow:
    """First attempts and retries of one queue, counted in slots over the window."""

    __slots__ = ("budget", "slots", "width")

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self.width = budget.window / SLOTS
        self.slots: deque[list[float]] = deque()  # [slot start, first attempts, retries]

    def _slot(self, now: float) -> list[float]:
        slots = self.slots
        horizon = now - self.budget.window
        while slots and slots[0][0] + self.width <= horizon:
            slots.popleft()
        start = now - now % self.width
        if not slots or slots[-1][0] < start:
            slots.append([start, 0, 0])
        return slots[-1]

    def record(self, retry: bool, now: float) -> None:
        self._slot(now)[2 if retry else 1] += 1

    def room(self, now: float) -> int:
        """How many more retries the budget allows at `now`."""
        self._slot(now)
        firsts = sum(s[1] for s in self.slots)
        retries = sum(s[2] for s in self.slots)
        allowed = max(self.budget.minimum, math.floor(self.budget.fraction * firsts))
        return int(allowed - retries)

    def next_room(self, now: float) -> float:
        """When the oldest slot leaves the window (or one slot from now)."""
        if self.slots:
            return max(self.slots[0][0] + self.width + self.budget.window, now + 1e-6)
        return now + self.width


Parked = list[tuple[int, int, str]]  # a heap of (-priority, seq, job id)


class Limits:
    """The limits in force and the jobs each holds back."""

    def __init__(
        self, rate_limits: dict[str, RateLimit], retry_budgets: dict[str, RetryBudget]
    ) -> None:
        # Shared with the system, which adds the limits of tasks registered later.
        self.rate_limits = rate_limits
        self.retry_budgets = retry_budgets
        self.logs: dict[str, StartLog] = {}
        self.windows: dict[str, BudgetWindow] = {}
        self.parked: dict[tuple[str, str], Parked] = {}  # ("rate", task) | ("budget", queue)
        self.armed: set[tuple[str, str]] = set()
        self.deferred: Counter[tuple[str, str]] = Counter()  # jobs held back, ever

    def __bool__(self) -> bool:
        return bool(self.rate_limits or self.retry_budgets)

    def admit(
        self, task: str, queue: str, retry: bool, now: float
    ) -> tuple[tuple[str, str], float] | None:
        """None if the job may start now (its start is counted), else (key, when to retry)."""
        budget = self.retry_budgets.get(queue)
        window = None
        if budget is not None:
            window = self.windows.get(queue)
            if window is None or window.budget is not budget:
                window = self.windows[queue] = BudgetWindow(budget)
            if retry and window.room(now) <= 0:
                return ("budget", queue), window.next_room(now)
        limit = self.rate_limits.get(task)
        log = None
        if limit is not None:
            log = self.logs.get(task)
            if log is None or log.limit is not limit:
                log = self.logs[task] = StartLog(limit)
            if log.room(now) <= 0:
                return ("rate", task), log.next_room()
        if window is not None:
            window.record(retry, now)
        if log is not None:
            log.times.append(now)
        return None

    def restore(self, starts: list[tuple[float, str, str, bool]], now: float) -> None:
        """Count again the starts still inside their windows: (time, task, queue, retry)."""
        for at, task, queue, retry in sorted(starts):
            limit = self.rate_limits.get(task)
            if limit is not None and now - at < limit.per:
                log = self.logs.get(task)
                if log is None or log.limit is not limit:
                    log = self.logs[task] = StartLog(limit)
                log.times.append(at)
            budget = self.retry_budgets.get(queue)
            if budget is not None and now - at < budget.window:
                window = self.windows.get(queue)
                if window is None or window.budget is not budget:
                    window = self.windows[queue] = BudgetWindow(budget)
                window.record(retry, at)

    def park(self, key: tuple[str, str], entry: tuple[int, int, str]) -> bool:
        """Hold a job back; True if the key needs a timer armed."""
        heapq.heappush(self.parked.setdefault(key, []), entry)
        self.deferred[key] += 1
        if key in self.armed:
            return False
        self.armed.add(key)
        return True

    def release(
        self, key: tuple[str, str], now: float, *, timer: bool = True
    ) -> list[tuple[int, int, str]]:
        """The parked entries the limit may have room for now, best first.

        `timer`: the key's timer fired (it is no longer armed), and at least one
        entry is let go so that the limit is asked again. Otherwise (a first
        attempt added budget) the timer still pending stays armed and only what
        there is room for leaves: re-parking the rest would arm a timer each time.
        """
        if timer:
            self.armed.discard(key)
        heap = self.parked.get(key)
        if not heap:
            return []
        kind, name = key
        if kind == "rate":
            log = self.logs.get(name)
            room = log.room(now) if log is not None else len(heap)
        else:
            window = self.windows.get(name)
            room = window.room(now) if window is not None else len(heap)
        least = 1 if timer else 0
        out = [heapq.heappop(heap) for _ in range(min(max(room, least), len(heap)))]
        if not heap:
            del self.parked[key]
        return out

    def waiting(self) -> dict[str, dict[str, int]]:
        """Jobs held back now, per task (rate) and per queue (budget); stale entries included."""
        out: dict[str, dict[str, int]] = {"rate": {}, "budget": {}}
        for (kind, name), heap in self.parked.items():
            out[kind][name] = len(heap)
        return out
