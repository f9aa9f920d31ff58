"""Invariants under random fault plans, and each checker caught failing on a broken core."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.core import dispatch
from actorq.core import effects as fx
from actorq.core import messages as m
from actorq.core.events import Failed, Succeeded
from actorq.sim import SimReport, Simulation, sleep

QUIET = 1800.0  # faults stop here
BOUND = 1800.0  # and every job must be finished this long after


def make_system(policy: RestartPolicy | None = None) -> ActorSystem:
    # Dead jobs are handed to the dead letters again at each sweep after the
    # retention: the hand-off's bound, which must lie within the liveness bound.
    system = ActorSystem(workers=3, retention=600.0)
    policy = policy or RestartPolicy(max_restarts=3, backoff=Backoff.exponential(2.0, cap=60))

    @system.task("pay", policy=policy, timeout=10.0)
    def pay(n: int) -> int:
        sleep(1.0)
        return n

    @system.task("ship", policy=policy, timeout=10.0)
    def ship(n: int) -> int:
        return n

    return system


fault_plans = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32),
        "errors": st.floats(0.0, 0.6),
        "crash": st.floats(0.0, 0.1),
        "hang": st.floats(0.0, 0.1),
        "slow": st.floats(0.0, 0.1),
        "pause": st.floats(1.0, 60.0),
        "dispatcher_at": st.lists(st.floats(1.0, QUIET - 1), max_size=3),
        "mid_commit": st.floats(0.0, 0.2),
        "append_failure": st.floats(0.0, 0.05),
        "latency": st.floats(0.0, 0.05),
        "outage": st.none() | st.tuples(st.floats(0.0, QUIET - 300), st.floats(1.0, 300.0)),
        "jump": st.none() | st.floats(-300.0, 300.0),
    }
)


def simulate(plan: dict[str, Any], journal: str) -> SimReport:
    sim = Simulation(make_system(), seed=plan["seed"], journal=journal, liveness_bound=BOUND)
    sim.poisson("pay", 0.01, end=QUIET)
    sim.model("ship", service=lambda r: r.expovariate(1.0), fail=0.1)
    sim.poisson("ship", 0.02, end=QUIET)
    faults = sim.faults
    faults.handler_errors(rate=plan["errors"], end=QUIET)
    faults.worker_crashes(p=plan["crash"], end=QUIET)
    faults.worker_hangs(p=plan["hang"], end=QUIET)
    faults.slow_workers(p=plan["slow"], pause=plan["pause"], end=QUIET)
    faults.dispatcher_crashes(
        at=tuple(plan["dispatcher_at"]), mid_commit=plan["mid_commit"], end=QUIET
    )
    faults.journal_failures(rate=plan["append_failure"], end=QUIET)
    faults.journal_delay(plan["latency"])
    if plan["outage"] is not None:
        start, length = plan["outage"]
        faults.outage(start, start + length)
    if plan["jump"] is not None:
        faults.clock_jump(QUIET / 2, plan["jump"])
    return sim.run(until=QUIET + BOUND + 600)


@pytest.mark.parametrize("journal", ["memory", "file"])
@given(plan=fault_plans)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_invariant_holds_under_random_fault_plans(journal: str, plan: dict[str, Any]) -> None:
    report = simulate(plan, journal)
    assert report.ok, (report.violation(), plan)
    assert report.invariants["liveness"].held  # judged: the run went on long enough
    # Only submissions that were never acknowledged (cut by a crash) may be unfinished.
    assert report.unfinished <= report.jobs - report.acknowledged


# -- each checker fails on a deliberately broken core ---------------------------------------


def broken_run(
    *,
    policy: RestartPolicy | None = None,
    fail: float = 0.0,
    configure: Any = None,
    until: float = 3 * 3600,
) -> SimReport:
    sim = Simulation(make_system(policy), seed=11, liveness_bound=BOUND)
    sim.model("ship", service=1.0, fail=fail)
    sim.poisson("ship", 0.05, end=600)
    if configure is not None:
        configure(sim)
    return sim.run(until=until)


def test_acknowledged_loss_is_caught(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A core that answers a submission before it is durable loses it in a crash."""

    def answer_early(core: dispatch.DispatchCore, msg: m.Submit, now: float) -> None:
        core._out.now.append(fx.Answer(msg.reply, core.submit(msg.jobs, now)))

    monkeypatch.setitem(dispatch._HANDLERS, m.Submit, answer_early)
    report = broken_run(
        configure=lambda sim: sim.faults.dispatcher_crashes(mid_commit=0.3, end=600)
    )
    inv = report.invariants["no_acknowledged_loss"]
    assert inv.held is False
    assert inv.first_violation is not None
    assert "gone after the Dispatcher recovered" in inv.first_violation
    err = capsys.readouterr().err
    assert "seed 11" in err
    assert "replay with:" in err


def test_attempts_beyond_the_policy_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that retries whatever the policy says runs a job too often."""

    def always_retry(
        core: dispatch.DispatchCore,
        job_id: str,
        attempt: int,
        error: str,
        lineage: Any,
        now: float,
    ) -> None:
        core.persist(Failed(job_id, attempt, error, now, now + 1.0, 1.0))
        core._out.now.append(fx.Arm([(now + 1.0, "due", job_id, now + 1.0)]))

    monkeypatch.setattr(dispatch.DispatchCore, "_fail", always_retry)
    report = broken_run(fail=1.0)
    assert report.invariants["attempts_within_policy"].held is False


def test_an_accepted_fenced_result_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that takes any result for an unfinished job accepts a replaced worker's."""

    def unfenced(core: dispatch.DispatchCore, msg: m.Finished, now: float) -> None:
        for job_id, attempt, ok, value, _error, _lineage, _seconds in msg.results:
            job = core.state.jobs.get(job_id)
            if job is not None and not job.status.terminal and ok:
                core.persist(Succeeded(job_id, attempt, value or b"\xc0", now))

    monkeypatch.setitem(dispatch._HANDLERS, m.Finished, unfenced)

    def slow(sim: Simulation) -> None:
        sim.faults.slow_workers(p=0.5, pause=30.0, end=600)  # past the 10 s timeout

    report = broken_run(configure=slow)
    assert report.invariants["no_fenced_result"].held is False


def test_unbalanced_dead_letters_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that never hands dead jobs to the DeadLetter actor."""
    monkeypatch.setattr(dispatch.DispatchCore, "_bury", lambda core, job: None)
    report = broken_run(policy=RestartPolicy(max_restarts=0), fail=1.0)
    inv = report.invariants["dead_letters_balanced"]
    assert inv.held is False
    assert inv.first_violation is not None
    assert "never reached the dead letters" in inv.first_violation


def test_lost_liveness_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core that ignores its timers leaves retrying jobs waiting forever."""
    monkeypatch.setitem(dispatch._HANDLERS, m.TimersFired, lambda core, msg, now: None)
    report = broken_run(
        policy=RestartPolicy(max_restarts=3, backoff=Backoff.constant(5.0)), fail=0.5
    )
    inv = report.invariants["liveness"]
    assert inv.held is False


def test_the_healthy_core_passes_the_same_runs() -> None:
    """The runs above, with the real core: no checker fires."""
    reports = [
        broken_run(configure=lambda sim: sim.faults.dispatcher_crashes(mid_commit=0.3, end=600)),
        broken_run(fail=1.0),
        broken_run(configure=lambda sim: sim.faults.slow_workers(p=0.5, pause=30.0, end=600)),
        broken_run(policy=RestartPolicy(max_restarts=0), fail=1.0),
        broken_run(policy=RestartPolicy(max_restarts=3, backoff=Backoff.constant(5.0)), fail=0.5),
    ]
    for report in reports:
        assert report.ok, report.violation()
        assert report.invariants["liveness"].held
    assert reports[2].invariants["no_fenced_result"].checks > 0  # late results did arrive
    assert reports[3].dead_letters == reports[3].dead > 0
