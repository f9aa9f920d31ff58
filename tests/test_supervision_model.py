"""A state machine over supervision trees, held to a small model of OTP's rules.

Hypothesis builds a tree (every strategy and restart type, nested
supervisors, intensities 0-3 within 60 s), then crashes workers, makes them
exit normally or with shutdown, and lets virtual time pass. After every step
the children running and the order of every start and stop must be what the
model of OTP's supervisor (`tests/otp/model.py`) says; at the end, so must
the final stop.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.otp import actorq
from tests.otp.model import Model

PERIOD = 60
RESTARTS = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")


@st.composite
def trees(draw: st.DrawFn) -> dict[str, Any]:
    names = iter("abcdefghijklmnopqrtuvwxyz")
    sups = iter(range(1, 10))

    def flags() -> dict[str, Any]:
        return {
            "strategy": draw(st.sampled_from(STRATEGIES)),
            "intensity": draw(st.integers(0, 3)),
            "period": PERIOD,
        }

    def worker() -> dict[str, Any]:
        restart = draw(st.sampled_from(RESTARTS))
        return {"name": next(names), "restart": restart, "init_ms": 0, "stop_ms": 0}

    children: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 3)) == 0:
            inner = [worker() for _ in range(draw(st.integers(1, 3)))]
            restart = draw(st.sampled_from(RESTARTS))
            children.append(
                {"name": f"s{next(sups)}", "restart": restart, **flags(), "children": inner}
            )
        else:
            children.append(worker())
    return {"name": "root", "restart": "permanent", **flags(), "children": children}


def workers(node: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for child in node["children"]:
        out.extend(workers(child) if "children" in child else [child["name"]])
    return out


class Supervision(RuleBasedStateMachine):
    run: actorq.Run | None = None
    model: Model | None = None

    @initialize(tree=trees())
    def start(self, tree: dict[str, Any]) -> None:
        self.names = workers(tree)
        self.run = actorq.Run({"tree": tree, "events": []})
        self.model = Model(tree)
        self.run.start()

    @precondition(lambda self: self.run is not None)
    @rule(data=st.data(), kind=st.sampled_from(("crash", "crash", "normal", "shutdown")))
    def exit(self, data: st.DataObject, kind: str) -> None:
        """A worker crashes, or exits with reason normal or shutdown."""
        assert self.run is not None and self.model is not None
        name = data.draw(st.sampled_from(self.names))
        if kind == "crash":
            event = {"do": "crash", "child": name, "label": f"@crash {name}"}
        else:
            event = {"do": "exit", "child": name, "reason": kind, "label": f"@{kind} {name}"}
        self.run.step(event)
        self.model.event(kind, name)

    @precondition(lambda self: self.run is not None)
    @rule(seconds=st.sampled_from((1, 30, PERIOD + 1)))
    def wait(self, seconds: int) -> None:
        """Time passes: restarts older than the period stop counting."""
        assert self.run is not None and self.model is not None
        self.run.step({"do": "wait", "ms": seconds * 1000, "label": f"@wait {seconds}"})
        self.model.wait(seconds)

    @invariant()
    def same_as_otp(self) -> None:
        if self.run is None or self.model is None:
            return
        assert self.run.lines() == self.model.trace
        assert self.run.alive_now() == self.model.alive()

    def teardown(self) -> None:
        if self.run is None or self.model is None:
            return
        result = self.run.finish()
        self.model.stop()
        assert result["trace"] == self.model.trace
        assert result["gave_up"] == self.model.gave_up
        assert result["leftovers"] == []


Supervision.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_supervision_follows_otp = Supervision.TestCase
