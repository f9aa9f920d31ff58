"""ChildSpec, and the messages a Supervisor takes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pykka

from actorq.supervision.address import Address

RestartType = Literal["permanent", "transient", "temporary"]
Shutdown = float | Literal["brutal_kill", "infinity"]

WORKER_SHUTDOWN = 5.0
"""OTP's default shutdown for a worker, in seconds; a supervisor's is infinity."""


@dataclass(frozen=True, eq=False)
class ChildSpec:
    """How to build and treat one child. The spec owns the child's Address.

    `restart`: permanent (always restarted), transient (restarted only after
    an abnormal exit), temporary (never restarted).

    `shutdown` (OTP's): how long a stop may take before the incarnation is
    abandoned: seconds, "infinity", or "brutal_kill" (do not wait: the
    incarnation handles no more messages and its on_stop does not run).
    None: 5 s for a worker, infinity for a child Supervisor.
    """

    name: str
    factory: Callable[[], pykka.Actor]
    restart: RestartType = "permanent"
    shutdown: Shutdown | None = None
    address: Address = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.restart not in ("permanent", "transient", "temporary"):
            raise ValueError(f"restart must be permanent, transient or temporary: {self.restart!r}")
        s = self.shutdown
        if not (
            s is None
            or s in ("brutal_kill", "infinity")
            or (isinstance(s, int | float) and not isinstance(s, bool) and s >= 0)
        ):
            raise ValueError(f"shutdown must be seconds >= 0, 'brutal_kill' or 'infinity': {s!r}")
        if self.address is None:
            object.__setattr__(self, "address", Address(self.name))

    @classmethod
    def of(
        cls,
        actor_class: type[pykka.Actor],
        *args: Any,
        name: str,
        restart: RestartType = "permanent",
        shutdown: Shutdown | None = None,
        **kwargs: Any,
    ) -> ChildSpec:
        return cls(name, lambda: actor_class(*args, **kwargs), restart, shutdown)

    def stop_timeout(self, is_supervisor: bool) -> float | None:
        """Seconds to wait for a stop (None: no limit; 0: brutal_kill)."""
        s = self.shutdown
        if s is None:
            return None if is_supervisor else WORKER_SHUTDOWN
        if s == "infinity":
            return None
        if s == "brutal_kill":
            return 0.0
        return float(s) if math.isfinite(s) else None


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Replace a child now (one known to be hung), with its group by the strategy.

    A replacement asked for is not a failure: it does not count toward the
    supervisor's restart intensity.
    """

    name: str
    reason: str = "restart requested"


@dataclass(frozen=True, slots=True)
class StartChild:
    """Ask: add a child at the end and start it; answers its Address."""

    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class WhichChildren:
    """Ask: the children as (name, running, restarts) tuples, in start order."""


class ChildHung(Exception):
    """Recorded as the error of a child replaced by `RestartChild`."""
