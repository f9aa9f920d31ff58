"""Fault injection in virtual time: six hours of retries against a flaky partner, in a second.

The simulator is `actorq.sim` (docs/simulation.md); the scenarios in
examples/sim/ go further: a payment API with an outage, a retry storm with
and without a retry budget, Dispatcher crashes under load, and the AWS
backoff-and-jitter comparison. From the command line:

    actorq simulate examples/sim/payments.py:scenario --compare --until 6h
"""

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.sim import Simulation

system = ActorSystem(workers=4)


@system.task(
    "call_partner",
    policy=RestartPolicy(max_restarts=5, backoff=Backoff.exponential(60, cap=900, jitter="equal")),
)
def call_partner(order: int) -> str:
    return f"order {order} confirmed"


if __name__ == "__main__":
    sim = Simulation(system, seed=42)
    sim.burst("call_partner", 200, at=0.0)
    sim.faults.handler_errors("call_partner", rate=0.5, error="TimeoutError")  # half fail
    report = sim.run(until=6 * 3600)
    last = (report.finished_at or 0.0) / 3600
    print(f"simulated 6 hours; the last job finished after {last:.1f} hours")
    print("succeeded:", report.succeeded, "dead:", report.dead, "attempts:", report.attempts)
    print("invariants hold:", report.ok, "digest:", report.digest[:16])
