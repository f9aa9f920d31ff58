"""`actorq simulate`: a shipped scenario end to end, comparisons, bad input, violations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def simulate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorq.service.cli", "simulate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_shipped_scenario_runs_and_writes_its_report(tmp_path: Path) -> None:
    done = simulate(
        "examples/sim/crashes.py:scenario", "--seed", "3", "--until", "1h", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert "invariants" in done.stdout
    assert "no_acknowledged_loss" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True
    assert report["seed"] == 3
    assert report["dispatcher_restarts"] > 0
    assert f"digest {report['digest']}" in done.stdout
    assert (tmp_path / "timeline.png").stat().st_size > 0
    again = simulate("examples/sim/crashes.py:scenario", "--seed", "3", "--until", "1h")
    assert f"digest {report['digest']}" in again.stdout  # the same seed replays the same run


def test_compare_runs_every_variant_side_by_side() -> None:
    done = simulate("examples/sim/payments.py:scenario", "--compare", "--until", "30m")
    assert done.returncode == 0, done.stderr
    for variant in ("patient", "quick", "constant"):
        assert f"digest ({variant})" in done.stdout


def test_bad_input_exits_2_with_a_message(tmp_path: Path) -> None:
    for args, message in [
        (["examples/sim/nope.py:scenario"], "no such file"),
        (["examples/sim/crashes.py:missing"], "no scenario function"),
        (["examples/sim/crashes.py"], "MODULE:SCENARIO"),
        (["examples/sim/crashes.py:scenario", "--until", "soon"], "not a duration"),
        (["examples/sim/crashes.py:scenario", "--compare"], "no `variants`"),
    ]:
        done = simulate(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)


BROKEN = """
from actorq import ActorSystem, Backoff, RestartPolicy
from actorq.core import dispatch, messages as m

system = ActorSystem(workers=2)

@system.task("flaky", policy=RestartPolicy(max_restarts=3, backoff=Backoff.constant(5.0)))
def flaky(n):
    return n

def scenario(sim):
    # A core that ignores its timers: retries never come due.
    dispatch._HANDLERS[m.TimersFired] = lambda core, msg, now: None
    sim.model("flaky", service=1.0, fail=0.5)
    sim.poisson("flaky", 0.1, end=600)
"""


def test_a_violation_exits_1_and_says_how_to_replay_it(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN)
    done = simulate("broken.py:scenario", "--seed", "5", "--until", "2h", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VIOLATED liveness" in done.stdout
    assert "actorq simulate broken.py:scenario --seed 5 --until 2h" in done.stdout
