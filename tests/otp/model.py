"""A small sequential model of OTP's supervisor rules: the oracle of the state machine test.

supervisor(3) and OTP 25's supervisor.erl: children start in order and stop
in reverse, one at a time; permanent children are always restarted,
transient ones after an abnormal exit (after a normal one the spec stays,
not running, and a later group restart starts it), temporary ones never (a
group restart stops and drops them); one_for_all restarts every child,
rest_for_one the child and those after it; more than `intensity` restarts
within `period` seconds and the supervisor stops its children and exits
with reason shutdown, which its parent treats as a normal exit. Time is a
number the caller moves; the window is exact (actorq's rule, see README).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Child:
    spec: dict[str, Any]
    running: bool = False
    sup: Sup | None = None


@dataclass(eq=False)
class Sup:
    spec: dict[str, Any]
    children: list[Child] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    parent: tuple[Sup, Child] | None = None


class Model:
    def __init__(self, tree: dict[str, Any]) -> None:
        self.trace: list[str] = []
        self.now = 0.0
        self.gave_up = False
        self.root = self._start_sup(tree, None)

    def _start_sup(self, spec: dict[str, Any], parent: tuple[Sup, Child] | None) -> Sup:
        sup = Sup(spec, [Child(c) for c in spec["children"]], parent=parent)
        self.trace.append(f"start {spec['name']}")
        for child in sup.children:
            self._start(sup, child)
        return sup

    def _start(self, sup: Sup, child: Child) -> None:
        if "children" in child.spec:
            child.sup = self._start_sup(child.spec, (sup, child))
        else:
            self.trace.append(f"start {child.spec['name']}")
        child.running = True

    def _stop(self, child: Child) -> None:
        if not child.running:
            return
        if child.sup is not None:
            self._stop_all(child.sup)
            child.sup = None
        else:
            self.trace.append(f"stop {child.spec['name']}")
        child.running = False

    def _stop_all(self, sup: Sup) -> None:
        for child in reversed(sup.children):
            self._stop(child)

    def _find(self, name: str, sup: Sup) -> tuple[Sup, Child] | None:
        for child in sup.children:
            if child.spec["name"] == name and child.running:
                return sup, child
            if child.sup is not None and (hit := self._find(name, child.sup)):
                return hit
        return None

    def _exited(self, sup: Sup, child: Child, abnormal: bool) -> None:
        child.running, child.sup = False, None
        restart = child.spec["restart"]
        if restart == "permanent" or (restart == "transient" and abnormal):
            self._restart(sup, child)
        elif restart == "temporary":
            sup.children.remove(child)

    def _restart(self, sup: Sup, child: Child) -> None:
        period = sup.spec["period"]
        sup.restarts = [t for t in sup.restarts if t > self.now - period] + [self.now]
        if len(sup.restarts) > sup.spec["intensity"]:
            self._give_up(sup)
            return
        strategy = sup.spec["strategy"]
        if strategy == "one_for_one":
            group = [child]
        elif strategy == "one_for_all":
            group = list(sup.children)
        else:
            group = sup.children[sup.children.index(child) :]
        for other in reversed(group):
            self._stop(other)
            if other.spec["restart"] == "temporary":
                sup.children.remove(other)
        for other in group:
            if other in sup.children:
                self._start(sup, other)

    def _give_up(self, sup: Sup) -> None:
        self._stop_all(sup)
        if sup.parent is None:
            self.gave_up = True
            return
        self._exited(*sup.parent, abnormal=False)

    def event(self, kind: str, name: str) -> None:
        """`kind`: crash, normal or shutdown; logged as the runners log it."""
        label = f"@{kind} {name}"
        hit = None if self.gave_up else self._find(name, self.root)
        if hit is None:
            self.trace.append(f"{label}: not running")
            return
        self.trace.append(label)
        self.trace.append(f"stop {name}")
        self._exited(*hit, abnormal=kind == "crash")

    def wait(self, seconds: float) -> None:
        self.trace.append(f"@wait {seconds:g}")
        self.now += seconds

    def alive(self) -> list[str]:
        def walk(sup: Sup) -> list[str]:
            out = []
            for child in sup.children:
                if child.running:
                    out.append(child.spec["name"])
                    if child.sup is not None:
                        out.extend(walk(child.sup))
            return out

        return [] if self.gave_up else sorted(walk(self.root))

    def stop(self) -> None:
        if self.gave_up:
            self.trace.append("@stop: not running")
        else:
            self.trace.append("@stop")
            self._stop_all(self.root)
