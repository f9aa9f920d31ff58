"""The shipped scenarios show what they claim, with small counts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from actorq.sim import Simulation

EXAMPLES = Path(__file__).parent.parent / "examples" / "sim"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sim_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_backoff_and_jitter_orderings_match_the_aws_post() -> None:
    """Brooker 2015: exponential without jitter is by far the slowest; full and equal
    jitter make the fewest calls; decorrelated more than full; no backoff the most."""
    backoff = load("backoff")
    for seed in (1, 2):
        results = {kind: backoff.run(kind, clients=50, seed=seed) for kind in backoff.KINDS}
        calls = {kind: r[0] for kind, r in results.items()}
        took = {kind: r[1] for kind, r in results.items()}
        assert max(calls, key=calls.__getitem__) == "none"
        assert sorted(calls, key=calls.__getitem__)[:2] in (["full", "equal"], ["equal", "full"])
        assert calls["decorrelated"] > calls["full"]
        slowest, runner_up = sorted(took.values(), reverse=True)[:2]
        assert took["exponential"] == slowest
        assert slowest > 3 * runner_up  # by far


def test_a_retry_budget_damps_the_retry_storm() -> None:
    storm = load("retry_storm")
    amplification, dead = {}, {}
    for variant in storm.scenario.variants:
        sim = Simulation(storm.system, seed=2)
        storm.scenario(sim, variant)
        report = sim.run(until=16 * 60)  # through the spike
        assert report.ok, report.violation()
        amplification[variant] = report.amplification
        dead[variant] = report.dead
    # The core's budget: retries at most 10 % of first attempts (or 10) per minute.
    assert amplification["budget"] < 1.25
    assert amplification["no-budget"] > amplification["budget"] + 0.3
    # Past the budget a retry waits for room rather than giving up.
    assert dead["budget"] < dead["no-budget"]


def test_payments_lose_fewer_orders_with_a_patient_policy() -> None:
    payments = load("payments")
    dead = {}
    for variant in ("patient", "quick"):
        sim = Simulation(payments.system, seed=4)
        payments.scenario(sim, variant)
        report = sim.run(until=4 * 3600)
        assert report.ok, report.violation()
        dead[variant] = report.dead
    assert dead["patient"] < dead["quick"]
