"""RestartPolicy: one object that governs both actor restarts and job retries.

For a supervisor, `max_restarts` within `within` seconds is the restart
intensity (OTP); past it the supervisor escalates. For a job, the job is the
child: `max_restarts=3` allows 3 retries, 4 attempts in all, and giving up
sends it to the dead letters.

The decider (Akka's) is `retry_on` / `give_up_on`. It matches exception
classes by their qualified names along the raised exception's MRO, which is
exactly `isinstance` for a live exception, and also works for a policy that
was stored in a journal and read back without importing anything.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from actorq.supervision.backoff import Backoff

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")

ExceptionSpec = type[BaseException] | str


def qualified_name(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def exception_lineage(exc: BaseException) -> tuple[str, ...]:
    """The qualified names of an exception's classes, most specific first."""
    return tuple(qualified_name(c) for c in type(exc).__mro__ if issubclass(c, BaseException))


def _names(specs: Iterable[ExceptionSpec]) -> tuple[str, ...]:
    out = []
    for spec in specs:
        if isinstance(spec, str):
            out.append(spec)
        elif isinstance(spec, type) and issubclass(spec, BaseException):
            out.append(qualified_name(spec))
        else:
            raise TypeError(f"retry_on/give_up_on take exception classes, not {spec!r}")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a RestartPolicy decided about one failure.

    `reason` is "restart", "give_up_on" (the decider refused the exception)
    or "intensity" (too many failures within the window).
    """

    restart: bool
    delay: float = 0.0
    reason: str = "restart"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 3
    within: float | None = None
    backoff: Backoff = field(default_factory=Backoff.none)
    strategy: Strategy = "one_for_one"
    retry_on: tuple[ExceptionSpec, ...] = (Exception,)
    give_up_on: tuple[ExceptionSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError("max_restarts cannot be negative")
        if self.within is not None and self.within <= 0:
            raise ValueError("within must be a positive number of seconds, or None")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if not isinstance(self.backoff, Backoff):
            raise TypeError("backoff must be a Backoff (Backoff.none(), .constant(), ...)")
        # Normalise eagerly so that a bad declaration fails here, not at the first failure.
        object.__setattr__(self, "retry_on", _names(self.retry_on))
        object.__setattr__(self, "give_up_on", _names(self.give_up_on))

    def should_retry(self, lineage: tuple[str, ...]) -> bool:
        """Decide from an exception's lineage: give_up_on wins over retry_on."""
        if any(name in lineage for name in self.give_up_on):
            return False
        return any(name in lineage for name in self.retry_on)

    def decide(
        self,
        lineage: tuple[str, ...] | None,
        earlier_failures: Sequence[float],
        now: float,
        *,
        step: int,
        last_delay: float | None,
        rng: random.Random,
    ) -> Decision:
        """The one restart decision, for a supervised child and for a job alike.

        `lineage` is the failure's exception lineage (None: an exit with no
        exception, which the decider does not judge). `earlier_failures` are
        the times of the failures before this one; this failure, at `now`,
        counts towards the intensity. `step` and `last_delay` select the
        backoff delay; the jitter is drawn from `rng`.
        """
        if lineage is not None and not self.should_retry(lineage):
            return Decision(False, reason="give_up_on")
        if self.within is None:
            recent = len(earlier_failures) + 1
        else:
            horizon = now - self.within
            recent = sum(1 for t in earlier_failures if t > horizon) + 1
        if recent > self.max_restarts:
            return Decision(False, reason="intensity")
        return Decision(True, self.backoff.delay(step, last_delay, rng))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_restarts": self.max_restarts,
            "within": self.within,
            "backoff": self.backoff.to_dict(),
            "strategy": self.strategy,
            "retry_on": list(self.retry_on),
            "give_up_on": list(self.give_up_on),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestartPolicy:
        return cls(
            max_restarts=data["max_restarts"],
            within=data["within"],
            backoff=Backoff.from_dict(data["backoff"]),
            strategy=data["strategy"],
            retry_on=tuple(data["retry_on"]),
            give_up_on=tuple(data["give_up_on"]),
        )
