"""Marc Brooker's "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015), on actorq.

Clients contend on one row under optimistic concurrency: an attempt reads
the row's version, then writes on condition that the version has not
changed; a conflict fails the attempt, and the job's RestartPolicy retries
it after a backoff. The network delay of each leg is |N(10 ms, 2 ms)|; the
backoff has base 5 ms and cap 2 s; retries are unbounded. Each attempt is
one call. The variants are the post's: no backoff, exponential without
jitter, and full, equal and decorrelated jitter.

    actorq simulate examples/sim/backoff.py:scenario --compare --until 10m
"""

from __future__ import annotations

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.sim import Simulation, rng, sleep

CLIENTS = 50
BASE, CAP = 0.005, 2.0
KINDS = ("none", "exponential", "full", "equal", "decorrelated")

system = ActorSystem(workers=CLIENTS)
row = {"version": 0}


class Conflict(Exception):
    """Another client wrote the row between this client's read and write."""


def network() -> float:
    return abs(rng("network").gauss(0.010, 0.002))


@system.task("write")
def write(client: int) -> int:
    sleep(network())  # the read reaches the row
    seen = row["version"]
    sleep(network() + network())  # the answer comes back, the conditional write goes out
    if row["version"] != seen:
        raise Conflict(f"client {client} read version {seen}, found {row['version']}")
    row["version"] += 1
    sleep(network())  # the acknowledgement comes back
    return seen


def policy(kind: str) -> RestartPolicy:
    if kind == "none":
        backoff = Backoff.none()
    elif kind == "exponential":
        backoff = Backoff.exponential(BASE, cap=CAP)
    else:
        backoff = Backoff.exponential(BASE, cap=CAP, jitter=kind)  # type: ignore[arg-type]
    return RestartPolicy(max_restarts=1_000_000, backoff=backoff)


def scenario(sim: Simulation, variant: str | None = None, clients: int = CLIENTS) -> None:
    """All clients start at once; each job is one client's single write."""
    row["version"] = 0
    sim.turn_cost = 0.0  # the post's clients talk to the row directly, not through a queue
    sim.policy("write", policy(variant or "full"))
    sim.burst("write", clients, at=0.0)


scenario.variants = KINDS  # type: ignore[attr-defined]


def run(kind: str, clients: int = CLIENTS, seed: int = 1) -> tuple[int, float]:
    """(calls, seconds until the last client succeeded) for one backoff kind."""
    sim = Simulation(system, seed=seed, workers=clients, snapshot_every=0)
    scenario(sim, kind, clients)
    report = sim.run(until=3600)
    if not report.ok or report.succeeded != clients:
        raise RuntimeError(f"the run did not complete cleanly: {report.violation()}")
    return report.attempts, report.finished_at or 0.0


def sweep(clients: tuple[int, ...], seeds: tuple[int, ...]) -> dict[str, list[tuple[float, float]]]:
    """Mean (calls, completion seconds) per kind, for each client count."""
    table: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    for n in clients:
        for kind in KINDS:
            runs = [run(kind, n, seed) for seed in seeds]
            calls = sum(r[0] for r in runs) / len(runs)
            took = sum(r[1] for r in runs) / len(runs)
            table[kind].append((calls, took))
    return table


def chart(path: str, clients: tuple[int, ...], table: dict[str, list[tuple[float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (calls, took) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, rows in table.items():
        calls.plot(clients, [r[0] for r in rows], marker="o", label=kind)
        took.plot(clients, [r[1] for r in rows], marker="o", label=kind)
    calls.set_title("calls (work)")
    took.set_title("time until the last client succeeded (s)")
    for ax in (calls, took):
        ax.set_xlabel("contending clients")
        ax.legend(fontsize="small")
    took.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:  # --chart PATH: the sweep behind docs/simulation.md
        counts, seeds = (10, 25, 50, 100), (1, 2, 3)
        results = sweep(counts, seeds)
        print("| backoff | " + " | ".join(f"{n} clients: calls / s" for n in counts) + " |")
        print("|---|" + "---|" * len(counts))
        for kind, rows in results.items():
            cells = " | ".join(f"{c:.0f} / {t:.2f}" for c, t in rows)
            print(f"| {kind} | {cells} |")
        chart(sys.argv[-1], counts, results)
    else:
        print(f"{'backoff':<14}{'calls':>8}{'completion (s)':>16}")
        for kind in KINDS:
            calls, seconds = run(kind)
            print(f"{kind:<14}{calls:>8}{seconds:>16.3f}")
