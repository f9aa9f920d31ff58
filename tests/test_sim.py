"""The simulator: determinism, virtual time, reports, and bad input."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from actorq import ActorSystem, Backoff, RestartPolicy, UnknownTask
from actorq.sim import SimReport, Simulation, now, parse_duration, sleep, vtime


def make_system() -> ActorSystem:
    system = ActorSystem(workers=3)
    policy = RestartPolicy(max_restarts=4, backoff=Backoff.exponential(1.0, cap=30, jitter="full"))

    @system.task("charge", policy=policy, timeout=20.0)
    def charge(order: int) -> dict[str, float]:
        started = now()
        sleep(0.5)
        return {"order": order, "took": now() - started}

    @system.task("fetch", policy=policy)
    async def fetch(n: int) -> float:
        started = now()
        await asyncio.sleep(2.0)
        await asyncio.sleep(0)
        return now() - started

    @system.task("bulk", policy=policy)
    def bulk(n: int) -> int:
        return n

    return system


def run(seed: int, *, journal: str = "memory", until: float = 3 * 3600) -> SimReport:
    sim = Simulation(make_system(), seed=seed, journal=journal, liveness_bound=1800)
    sim.poisson("charge", 0.05, end=3600)
    sim.burst("fetch", 10, at=60.0)
    sim.model("bulk", service=lambda r: r.expovariate(2.0), fail=0.2)
    sim.poisson("bulk", 0.1, end=3600)
    sim.faults.handler_errors("charge", rate=0.3, start=600, end=1800)
    sim.faults.dispatcher_crashes(at=(1000.0,), every=1200, end=3600, mid_commit=0.02)
    sim.faults.worker_crashes(p=0.02, end=3600)
    sim.faults.slow_workers(p=0.02, pause=40.0, end=3600)
    sim.faults.worker_hangs(p=0.02, end=3600)
    return sim.run(until=until)


def test_same_seed_same_digest_other_seed_other_digest() -> None:
    first, again, other = run(7), run(7), run(8)
    assert first.digest == again.digest
    assert first.summary() == again.summary()
    assert other.digest != first.digest
    assert first.ok, first.violation()
    assert first.dispatcher_restarts >= 1  # the plan's crashes happened
    assert first.worker_restarts >= 1


def test_thread_fibers_give_the_same_run_as_greenlets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the sim extra's greenlet, threads pass the baton: the run is the same."""
    with_greenlets = run(9, until=3600)
    monkeypatch.setattr(vtime, "_greenlet", None)
    with_threads = run(9, until=3600)
    assert with_threads.digest == with_greenlets.digest


def test_file_journal_runs_are_deterministic_too() -> None:
    first, again = run(3, journal="file"), run(3, journal="file")
    assert first.digest == again.digest
    assert first.ok, first.violation()


def test_handlers_sleep_in_virtual_time() -> None:
    """Hours of virtual time pass while a handler's sleeps cost no real time."""
    system = make_system()
    sim = Simulation(system, seed=1, workers=6)  # every job has a worker at once
    sim.burst("fetch", 5, at=10.0)
    sim.submit("charge", 1, at=20.0)
    report = sim.run(until=8 * 3600)
    assert report.succeeded == 6
    # fetch awaits 2 s of asyncio.sleep, charge sleeps 0.5 s: virtual time, exactly.
    assert report.time_to_success["max"] is not None
    assert 2.0 <= report.time_to_success["max"] < 2.1
    assert report.time_to_success["p50"] is not None
    assert report.time_to_success["p50"] >= 2.0


def test_a_handler_submits_follow_up_jobs_into_the_simulation() -> None:
    system = ActorSystem(workers=2)
    shipped: list[int] = []

    @system.task("order")
    def order(n: int) -> int:
        sleep(1.0)
        return system.submit("ship", n, delay=30.0).id.count("-")

    @system.task("ship")
    def ship(n: int) -> None:
        shipped.append(n)

    sim = Simulation(system, seed=1)
    sim.burst("order", 5, at=0.0)
    report = sim.run(until=3600)
    assert report.jobs == 10
    assert report.succeeded == 10
    assert sorted(shipped) == [0, 1, 2, 3, 4]
    assert report.finished_at is not None
    assert report.finished_at >= 31.0  # the follow-ups waited their delay in virtual time
    assert "submit" not in vars(system)  # the system is itself again after the run


def test_now_and_sleep_are_real_outside_a_simulation() -> None:
    before = time.time()
    sleep(0)
    assert before <= now() <= time.time()


def test_report_has_the_promised_figures_and_saves(tmp_path: Path) -> None:
    report = run(5)
    assert report.jobs > 0
    assert report.attempts >= report.succeeded + report.dead
    assert report.amplification >= 1.0
    assert set(report.attempts_histogram) == {"bulk", "charge", "fetch"}
    assert report.finished_at is not None
    assert report.samples
    assert report.samples[-1].submitted == report.jobs
    assert set(report.invariants) == {
        "no_acknowledged_loss",
        "attempts_within_policy",
        "no_fenced_result",
        "dead_letters_balanced",
        "liveness",
        "cron_fired_once",
    }
    judged = {name: inv for name, inv in report.invariants.items() if name != "cron_fired_once"}
    assert all(inv.held for inv in judged.values())
    assert report.invariants["cron_fired_once"].held is None  # no schedule: nothing judged
    written = report.save(tmp_path)
    assert {p.name for p in written} == {"report.json", "timeline.png", "time_to_success.png"}
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["digest"] == report.digest
    assert data["ok"] is True
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_input_is_refused_before_the_run() -> None:
    system = make_system()
    with pytest.raises(ValueError, match="timezone-aware"):
        Simulation(system, start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="journal"):
        Simulation(system, journal="redis")
    sim = Simulation(system)
    with pytest.raises(UnknownTask):
        sim.submit("nope", at=1.0)
    with pytest.raises(TypeError, match="unknown submit options"):
        sim.submit("bulk", 1, at=1.0, colour="red")
    with pytest.raises(UnknownTask):
        sim.model("nope", service=1.0)
    with pytest.raises(ValueError, match="until"):
        sim.run(until=0)
    sim.run(until=10)
    with pytest.raises(RuntimeError, match="runs once"):
        sim.run(until=10)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("15m", 900.0), ("6h", 21600.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5m", "soon", "inf"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
