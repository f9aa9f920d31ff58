"""A retry storm, with and without a retry budget (Google SRE book, "Handling Overload").

A backend serves 10 requests a second; beyond that, the fraction of calls
that fail grows with the overload (1 - capacity / load, measured over the
last second). Traffic runs at 8 a second, with a five-minute spike to 14.
Failed calls are retried after 0.5 to 1.5 s. Without a budget, retries
add to the load that made calls fail, and the overload feeds itself; with
a budget, a client retries only while retries stay under 10 % of its
requests in the last minute, and otherwise gives up at once.

actorq's RestartPolicy has no per-queue retry budget, so the budget is
modelled here, in the handler: an attempt past the first checks the budget
and raises `BudgetExhausted`, which the policy's decider gives up on.

    actorq simulate examples/sim/retry_storm.py:scenario --compare --until 40m
"""

from __future__ import annotations

from collections import deque

from actorq import ActorSystem, Backoff, RestartPolicy, current_job
from actorq.sim import Simulation, now, sleep

CAPACITY = 10.0  # requests per second the backend serves without failing
BASE, SPIKE = 8.0, 14.0
BUDGET = 0.10  # retries / requests
WINDOW = 60.0

system = ActorSystem(workers=64)


class Overloaded(Exception):
    """The backend shed this call."""


class BudgetExhausted(Exception):
    """Retrying now would exceed the client's retry budget."""


class Backend:
    def __init__(self) -> None:
        self.calls: deque[float] = deque()  # call times in the last second
        self.requests: deque[float] = deque()  # first attempts in the last WINDOW
        self.retries: deque[float] = deque()  # later attempts in the last WINDOW
        self.budgeted = False

    def reset(self, budgeted: bool) -> None:
        self.__init__()  # type: ignore[misc]
        self.budgeted = budgeted


backend = Backend()


@system.task(
    "call",
    policy=RestartPolicy(
        max_restarts=5,
        backoff=Backoff.exponential(0.5, factor=1.0, cap=0.5, jitter="equal"),
        give_up_on=(BudgetExhausted,),
    ),
)
def call(n: int) -> int:
    t = now()
    for seen in (backend.requests, backend.retries):
        while seen and seen[0] <= t - WINDOW:
            seen.popleft()
    if current_job().attempt == 1:
        backend.requests.append(t)
    else:
        if backend.budgeted and len(backend.retries) >= BUDGET * len(backend.requests):
            raise BudgetExhausted(f"retries {len(backend.retries)} / {len(backend.requests)}")
        backend.retries.append(t)
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
    backend.reset(budgeted=variant == "budget")
    sim.poisson("call", BASE, end=30 * 60)
    sim.poisson("call", SPIKE - BASE, start=10 * 60, end=15 * 60)


scenario.variants = ("no-budget", "budget")  # type: ignore[attr-defined]


if __name__ == "__main__":
    for variant in scenario.variants:  # type: ignore[attr-defined]
        sim = Simulation(system, seed=1)
        scenario(sim, variant)
        report = sim.run(until=40 * 60)
        print(variant, report.summary())
