"""A retry storm, with and without a retry budget (Google SRE book, "Handling Overload").

A backend serves 10 requests a second; beyond that, the fraction of calls
that fail grows with the overload (1 - capacity / load, measured over the
last second). Traffic runs at 8 a second, with a five-minute spike to 14.
Failed calls are retried after 0.5 to 1.5 s. Without a budget, retries
add to the load that made calls fail, and the overload feeds itself; with
the queue's `RetryBudget` (retries at most 10 % of first attempts in the
last minute), a retry past the budget waits in the queue for room instead
of reaching the backend.

    actorq simulate examples/sim/retry_storm.py:scenario --compare --until 40m
"""

from __future__ import annotations

from collections import deque

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.core.limits import RetryBudget
from actorq.sim import Simulation, now, sleep

CAPACITY = 10.0  # requests per second the backend serves without failing
BASE, SPIKE = 8.0, 14.0
BUDGET = RetryBudget(fraction=0.10, window=60.0)

system = ActorSystem(workers=64)


class Overloaded(Exception):
    """The backend shed this call."""


class Backend:
    def __init__(self) -> None:
        self.calls: deque[float] = deque()  # call times in the last second

    def reset(self) -> None:
        self.calls.clear()


backend = Backend()


@system.task(
    "call",
    policy=RestartPolicy(
        max_restarts=5,
        backoff=Backoff.exponential(0.5, factor=1.0, cap=0.5, jitter="equal"),
    ),
)
def call(n: int) -> int:
    t = now()
    calls = backend.calls
    calls.append(t)
    while calls and calls[0] <= t - 1.0:
        calls.popleft()
    sleep(0.02)  # the request's round trip
    load = float(len(calls))
    if load > CAPACITY and (1.0 - CAPACITY / load) > _uniform():
        raise Overloaded(f"load {load:.0f}/s over capacity {CAPACITY:.0f}/s")
    return n


def _uniform() -> float:
    from actorq.sim import rng

    return rng("backend").random()


def scenario(sim: Simulation, variant: str | None = None) -> None:
    backend.reset()
    sim.retry_budget(BUDGET if variant == "budget" else None)
    sim.poisson("call", BASE, end=30 * 60)
    sim.poisson("call", SPIKE - BASE, start=10 * 60, end=15 * 60)


scenario.variants = ("no-budget", "budget")  # type: ignore[attr-defined]


if __name__ == "__main__":
    for variant in scenario.variants:  # type: ignore[attr-defined]
        sim = Simulation(system, seed=1)
        scenario(sim, variant)
        report = sim.run(until=40 * 60)
        print(variant, report.summary())
