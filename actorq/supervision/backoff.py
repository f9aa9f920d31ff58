"""Delays between restarts (and between a job's retries).

Exponential backoff with the three jitter kinds of the AWS architecture
blog post "Exponential Backoff And Jitter": full (uniform in [0, d]), equal
(d/2 plus uniform in [0, d/2]) and decorrelated (uniform in
[base, previous*3], capped). Without jitter the delay is min(cap, base*factor^n).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

Jitter = Literal["full", "equal", "decorrelated"] | None

_JITTERS = (None, "full", "equal", "decorrelated")


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before restart number `n` (0-based).

    `reset_after`: once a supervised child has run this long without failing,
    its backoff starts again from the first step.
    """

    kind: Literal["none", "constant", "exponential"] = "none"
    base: float = 0.0
    factor: float = 2.0
    cap: float = 0.0
    jitter: Jitter = None
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("backoff delays cannot be negative")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if self.jitter not in _JITTERS:
            raise ValueError(f"jitter must be one of {_JITTERS}, not {self.jitter!r}")
        if self.reset_after < 0:
            raise ValueError("reset_after cannot be negative")

    @classmethod
    def none(cls) -> Backoff:
        return cls()

    @classmethod
    def constant(cls, delay: float, *, reset_after: float = 30.0) -> Backoff:
        return cls(kind="constant", base=delay, cap=delay, reset_after=reset_after)

    @classmethod
    def exponential(
        cls,
        base: float,
        factor: float = 2.0,
        cap: float = 60.0,
        jitter: Jitter = None,
        *,
        reset_after: float = 30.0,
    ) -> Backoff:
        if cap < base:
            raise ValueError("backoff cap must be >= base")
        return cls(
            kind="exponential",
            base=base,
            factor=factor,
            cap=cap,
            jitter=jitter,
            reset_after=reset_after,
        )

    def delay(self, n: int, previous: float | None, rng: random.Random) -> float:
        """The wait before restart `n` (0 = first); `previous` feeds decorrelated jitter.

        The random draw comes from the caller's `rng`, so that a seeded caller
        (a simulation, a replay) gets the same delays every time.
        """
        if self.kind == "none":
            return 0.0
        if self.kind == "constant":
            return self.base
        r = rng
        if self.jitter == "decorrelated":
            low = self.base
            high = max(low, (previous if previous is not None else self.base) * 3)
            return min(self.cap, r.uniform(low, high))
        # Clamp the exponent so huge restart counts cannot overflow a float.
        d = min(self.cap, self.base * self.factor ** min(n, 1000))
        if self.jitter == "full":
            return r.uniform(0.0, d)
        if self.jitter == "equal":
            return d / 2 + r.uniform(0.0, d / 2)
        return d

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.base,
            "factor": self.factor,
            "cap": self.cap,
            "jitter": self.jitter,
            "reset_after": self.reset_after,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Backoff:
        return cls(**data)
