"""Deterministic fault-injection simulation of an ActorSystem's workload.

    from actorq.sim import Simulation
    sim = Simulation(system, seed=7)
    sim.poisson("charge", rate=2.0, end=3600)
    sim.faults.handler_errors("charge", rate=0.3, start=600, end=1800)
    report = sim.run(until=6 * 3600)

Handlers may call `actorq.sim.sleep()` and `actorq.sim.now()`: virtual inside
a simulation, `time.sleep` and `time.time` outside. See docs/simulation.md.
"""

from actorq.sim.plan import FaultPlan
from actorq.sim.report import Invariant, SimReport
from actorq.sim.simulation import Simulation, Violation, parse_duration
from actorq.sim.vtime import now, rng, sleep

__all__ = [
    "FaultPlan",
    "Invariant",
    "SimReport",
    "Simulation",
    "Violation",
    "now",
    "parse_duration",
    "rng",
    "sleep",
]
