"""The simulator's own speed: a 6-hour day of 10,000 jobs with faults, in wall seconds.

    python -m bench.sim [--jobs 10000] [--hours 6] [--seed 1] [--journal memory|file]

Jobs arrive as a Poisson process over the first five hours; half run a real
handler that sleeps in virtual time (a greenlet each), half a model. Faults:
handler errors for an hour, a 10-minute outage of the backend, worker
crashes, hangs and slow workers, a Dispatcher crash every 20 minutes on
average (some inside a group commit), journal latency. One JSON line on
stdout: wall seconds, virtual seconds, steps, jobs, attempts, invariants, digest.
"""

from __future__ import annotations

import argparse
import json
import time

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.sim import Simulation, rng, sleep


def make_system() -> ActorSystem:
    system = ActorSystem(workers=16)
    policy = RestartPolicy(
        max_restarts=6, backoff=Backoff.exponential(2.0, cap=600.0, jitter="full")
    )

    @system.task("charge", policy=policy, timeout=60.0)
    def charge(order: int) -> int:
        sleep(abs(rng("api").gauss(0.4, 0.1)))
        return order

    @system.task("email", policy=policy, timeout=60.0)
    def email(order: int) -> int:
        return order

    return system


def run(jobs: int, hours: float, seed: int, journal: str) -> dict[str, object]:
    sim = Simulation(make_system(), seed=seed, journal=journal)
    busy = hours * 3600 * 5 / 6
    rate = jobs / busy / 2
    sim.poisson("charge", rate, end=busy)
    sim.model("email", service=lambda r: r.expovariate(2.0), fail=0.02)
    sim.poisson("email", rate, end=busy)
    faults = sim.faults
    faults.handler_errors("charge", rate=0.3, start=3600, end=7200)
    faults.handler_errors("charge", rate=1.0, start=9000, end=9600)
    faults.worker_crashes(p=0.002, end=busy)
    faults.worker_hangs(p=0.001, end=busy)
    faults.slow_workers(p=0.002, pause=90.0, end=busy)
    faults.dispatcher_crashes(every=1200.0, end=busy, mid_commit=0.0005)
    faults.journal_delay(lambda r: r.uniform(0.0002, 0.002))
    started = time.perf_counter()
    report = sim.run(until=hours * 3600)
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "virtual_s": hours * 3600,
        "speedup": round(hours * 3600 / wall),
        "steps": report.steps,
        "journal": journal,
        "jobs": report.jobs,
        "attempts": report.attempts,
        "succeeded": report.succeeded,
        "dead": report.dead,
        "dispatcher_restarts": report.dispatcher_restarts,
        "worker_restarts": report.worker_restarts,
        "invariants_hold": report.ok,
        "digest": report.digest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--journal", choices=("memory", "file"), default="memory")
    args = parser.parse_args()
    print(json.dumps(run(args.jobs, args.hours, args.seed, args.journal)))


if __name__ == "__main__":
    main()
