"""A flaky payment API: 30 % of calls fail for an hour, then a 15-minute outage.

    actorq simulate examples/sim/payments.py:scenario --until 6h --out sim-report
    actorq simulate examples/sim/payments.py:scenario --compare --until 6h

The variants are three retry policies for the same traffic and the same
faults: which one loses the fewest payments to the dead letters, and at
what cost in calls?
"""

from __future__ import annotations

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.sim import Simulation, rng, sleep

system = ActorSystem(workers=8)

POLICIES = {
    "patient": RestartPolicy(
        max_restarts=8, backoff=Backoff.exponential(5.0, cap=900.0, jitter="full")
    ),
    "quick": RestartPolicy(max_restarts=3, backoff=Backoff.exponential(1.0, cap=30.0)),
    "constant": RestartPolicy(max_restarts=5, backoff=Backoff.constant(60.0)),
}


@system.task("charge", policy=POLICIES["patient"], timeout=30.0)
def charge(order: int) -> str:
    sleep(abs(rng("api").gauss(0.3, 0.1)))  # the API call
    return f"order {order} charged"


def scenario(sim: Simulation, variant: str | None = None) -> None:
    if variant is not None:
        sim.policy("charge", POLICIES[variant])
    sim.poisson("charge", 0.25, end=4 * 3600)  # one order every four seconds
    sim.faults.handler_errors("charge", rate=0.3, start=3600, end=7200, error="ConnectionError")
    sim.faults.handler_errors("charge", rate=1.0, start=7200, end=8100, error="ConnectionError")
    sim.faults.latency("charge", extra=lambda r: r.expovariate(1 / 5.0), start=3600, end=8100)
    sim.faults.worker_crashes(p=0.002, end=4 * 3600)


scenario.variants = tuple(POLICIES)  # type: ignore[attr-defined]


if __name__ == "__main__":
    report = Simulation(system, seed=1)
    scenario(report)
    result = report.run(until=6 * 3600)
    print(result.summary())
    print("invariants hold:", result.ok)
