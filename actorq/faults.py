"""Fault points in the product code: no-ops unless a simulation installs an injector.

FoundationDB calls these BUGGIFY: the code that can fail in production says
where, and a deterministic simulation decides (from its seeded RNG) whether
it fails there this time. Outside a simulation each hook is one global read
and a return, so the hooks stay in the hot paths for good.
"""

from __future__ import annotations

from typing import IO, Protocol


class SimulatedCrash(BaseException):
    """The process died at this point (raised only inside a simulation)."""


class Injector(Protocol):
    def fault(self, point: str, key: str) -> BaseException | None:
        """The error to raise at `point` for `key` now, or None."""

    def torn(self, point: str, key: str, size: int) -> int | None:
        """How many bytes of a `size`-byte write reach the file before a crash, or None."""


_injector: Injector | None = None


def install(injector: Injector | None) -> None:
    """Set (or, with None, clear) the process's injector; only simulations call this."""
    global _injector  # noqa: PLW0603  (one injector per process, read by every hook)
    _injector = injector


def point(name: str, key: str = "") -> None:
    """Raise the fault an injector chose for this point, if any."""
    injector = _injector
    if injector is None:
        return
    error = injector.fault(name, key)
    if error is not None:
        raise error


def before_write(name: str, key: str, f: IO[bytes], data: bytes) -> None:
    """A crash in the middle of writing `data`: a prefix reaches `f`, then the process dies."""
    injector = _injector
    if injector is None:
        return
    keep = injector.torn(name, key, len(data))
    if keep is not None:
        f.write(data[:keep])
        f.flush()
        raise SimulatedCrash(f"crashed after writing {keep} of {len(data)} bytes at {name}")
