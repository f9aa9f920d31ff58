"""Dispatcher crashes under load: a crash every ten minutes on average, some of
them in the middle of a group commit, while 2 jobs a second arrive.

    actorq simulate examples/sim/crashes.py:scenario --until 3h
    actorq simulate examples/sim/crashes.py:scenario --until 3h --journal file

Acknowledged jobs must survive every crash; jobs whose submission a crash
cut short were never acknowledged, and the report counts them apart.
"""

from __future__ import annotations

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.sim import Simulation

system = ActorSystem(workers=6)


@system.task(
    "resize", policy=RestartPolicy(max_restarts=4, backoff=Backoff.exponential(1.0, cap=60.0))
)
def resize(image: int) -> int:
    return image


def scenario(sim: Simulation) -> None:
    sim.model("resize", service=lambda r: r.expovariate(1 / 1.5), fail=0.05)
    sim.poisson("resize", 2.0, end=2 * 3600)
    sim.faults.dispatcher_crashes(every=600.0, end=2 * 3600, mid_commit=0.002)
    sim.faults.journal_delay(lambda r: r.uniform(0.0005, 0.003))
    sim.faults.worker_crashes(p=0.001, end=2 * 3600)


if __name__ == "__main__":
    sim = Simulation(system, seed=1)
    scenario(sim)
    report = sim.run(until=3 * 3600)
    print(report.summary())
    print("dispatcher restarts:", report.dispatcher_restarts, "invariants hold:", report.ok)
