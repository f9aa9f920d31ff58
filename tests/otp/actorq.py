"""Run a scenario of `fixture.json` on actorq's Supervisor, as `erl/harness_run.erl` does on OTP.

The result has OTP's runner's shape: `trace` ("start X" at the end of a
child's on_start, a supervisor's before it starts its children as OTP's
init/1; "stop X" at the end of a worker's on_stop / on_failure; "@..."
markers for the events), `alive` (children running after the last event),
`gave_up` (the root ended before the final stop) and `leftovers` (workers
still running after the final stop).

Time is a VirtualClock: a `wait` advances it, so the restart intensity sees
the scenario's waits without the test sleeping through them. After each
event the runner waits until the trace and the whole tree have not changed
over a few looks, as the Erlang runner does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka

from actorq.clock import VirtualClock
from actorq.supervision import ChildSpec, RestartPolicy, Supervisor, WhichChildren

SETTLE_POLL = 0.005
SETTLE_STABLE = 3
SETTLE_MAX = 15.0


class Trace:
    """Lines in the order they were logged, and how many hooks are running now."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.busy = 0
        self.lock = threading.Lock()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def enter(self) -> None:
        with self.lock:
            self.busy += 1

    def leave(self) -> None:
        with self.lock:
            self.busy -= 1


class Worker(pykka.ThreadingActor):
    """OTP's gen_server child: logs its start and stop, crashes or exits on request."""

    def __init__(self, node: dict[str, Any], trace: Trace, made: list[pykka.Actor]) -> None:
        super().__init__()
        self.name = node["name"]
        self.init_ms, self.stop_ms = node["init_ms"], node["stop_ms"]
        self.trace = trace
        made.append(self)

    def _hook(self, ms: int, line: str) -> None:
        self.trace.enter()
        try:
            if ms:
                time.sleep(ms / 1000)  # the scenario's slow init / terminate
            self.trace.add(line)
        finally:
            self.trace.leave()

    def on_start(self) -> None:
        self._hook(self.init_ms, f"start {self.name}")

    def on_stop(self) -> None:
        self._hook(self.stop_ms, f"stop {self.name}")

    def on_failure(self, *exc_info: Any) -> None:
        self._hook(self.stop_ms, f"stop {self.name}")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if message in ("normal", "shutdown"):
            self.stop()  # actorq has one kind of non-failure exit
        return None


class TracedSupervisor(Supervisor):
    def __init__(self, *args: Any, trace: Trace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace = trace

    def on_start(self) -> None:
        self.trace.enter()
        try:
            self.trace.add(f"start {self.name}")
            super().on_start()
        finally:
            self.trace.leave()

    def on_stop(self) -> None:
        self.trace.enter()
        try:
            super().on_stop()
        finally:
            self.trace.leave()


def _policy(node: dict[str, Any]) -> RestartPolicy:
    return RestartPolicy(
        max_restarts=node["intensity"], within=node["period"], strategy=node["strategy"]
    )


class Run:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self.scenario = scenario
        self.trace = Trace()
        self.clock = VirtualClock()
        self.specs: dict[str, ChildSpec] = {}
        self.supervisors: set[str] = set()
        self.made: list[pykka.Actor] = []
        self.root: pykka.ActorRef[Any] | None = None

    def build(self, node: dict[str, Any]) -> list[ChildSpec]:
        specs = []
        for child in node["children"]:
            name = child["name"]
            if "children" in child:
                self.supervisors.add(name)
                factory = self._supervisor_factory(child, self.build(child))
            else:
                factory = self._worker_factory(child)
            self.specs[name] = spec = ChildSpec(name, factory, restart=child["restart"])
            specs.append(spec)
        return specs

    def _supervisor_factory(self, node: dict[str, Any], children: list[ChildSpec]) -> Any:
        return lambda: TracedSupervisor(
            children, _policy(node), name=node["name"], clock=self.clock, trace=self.trace
        )

    def _worker_factory(self, node: dict[str, Any]) -> Any:
        return lambda: Worker(node, self.trace, self.made)

    def walk(self, ref: pykka.ActorRef[Any]) -> Any:
        try:
            kids: list[tuple[str, bool, int]] = ref.ask(WhichChildren(), timeout=5)  # type: ignore[assignment]
        except (pykka.ActorDeadError, pykka.Timeout):
            return "dead"
        out = []
        for name, running, restarts in kids:
            actor = self.specs[name].address.actor
            sub = None
            if name in self.supervisors and running and actor is not None:
                sub = self.walk(actor.actor_ref)
            out.append((name, running, restarts, id(actor), sub))
        return out

    def snapshot(self) -> Any:
        assert self.root is not None
        with self.trace.lock:
            size, busy = len(self.trace.lines), self.trace.busy
        return size, busy, self.walk(self.root)

    def settle(self) -> None:
        previous, stable = self.snapshot(), 0
        deadline = time.monotonic() + SETTLE_MAX
        while stable < SETTLE_STABLE or previous[1]:
            if time.monotonic() > deadline:
                self.trace.add("!settle timeout")
                return
            time.sleep(SETTLE_POLL)
            now = self.snapshot()
            stable = stable + 1 if now == previous else 0
            previous = now

    def alive(self, tree: Any) -> list[str]:
        if tree == "dead":
            return []
        out = []
        for name, running, _restarts, _id, sub in tree:
            if running:
                out.append(name)
                if sub is not None:
                    out.extend(self.alive(sub))
        return out

    def poke(self, name: str, label: str, message: str) -> None:
        address = self.specs[name].address
        actor = address.actor
        if actor is None or not address.is_alive():
            self.trace.add(f"{label}: not running")
            return
        self.trace.add(label)
        actor.actor_ref.tell(message)  # to this incarnation, as a cast to its pid
        if not actor.actor_stopped.wait(15):
            self.trace.add(f"!no exit of {name}")

    def event(self, event: dict[str, Any]) -> None:
        kind = event["do"]
        if kind == "crash":
            self.poke(event["child"], event["label"], "crash")
        elif kind == "exit":
            self.poke(event["child"], event["label"], event["reason"])
        elif kind == "wait":
            self.trace.add(event["label"])
            self.clock.advance(event["ms"] / 1000)
        elif kind == "align":
            self.trace.add(event["label"])
        else:
            raise ValueError(f"unknown event {event!r}")

    def start(self) -> None:
        tree = self.scenario["tree"]
        self.root = TracedSupervisor.start(
            self.build(tree),
            _policy(tree),
            name=tree["name"],
            clock=self.clock,
            trace=self.trace,
            on_give_up=lambda escalation: None,
        )
        self.settle()

    def step(self, event: dict[str, Any]) -> None:
        self.event(event)
        self.settle()

    def alive_now(self) -> list[str]:
        assert self.root is not None
        return sorted(self.alive(self.walk(self.root) if self.root.is_alive() else "dead"))

    def lines(self) -> list[str]:
        with self.trace.lock:
            return list(self.trace.lines)

    def finish(self) -> dict[str, Any]:
        """Stop the tree (unless it gave up) and report."""
        assert self.root is not None
        root_alive = self.root.is_alive()
        alive = self.alive_now()
        if root_alive:
            self.trace.add("@stop")
            self.root.stop(block=True, timeout=30)
        else:
            self.trace.add("@stop: not running")
        leftovers = sorted(
            f"hw_{a.name}" for a in self.made if isinstance(a, Worker) and a.actor_ref.is_alive()
        )
        self.clock.close()
        return {
            "trace": self.lines(),
            "alive": alive,
            "gave_up": not root_alive,
            "leftovers": leftovers,
        }

    def run(self) -> dict[str, Any]:
        self.start()
        for event in self.scenario["events"]:
            self.step(event)
        return self.finish()


def run(scenario: dict[str, Any]) -> dict[str, Any]:
    return Run(scenario).run()
