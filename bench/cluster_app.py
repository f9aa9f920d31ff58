"""The system `bench.cluster` runs as nodes: ``actorq worker bench.cluster_app:system``."""

from __future__ import annotations

from actorq import ActorSystem

system = ActorSystem(workers=4, journal="memory")


@system.task("noop")
def noop() -> None:
    return None
