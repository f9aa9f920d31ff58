"""What a submission must satisfy before any actor hears of it.

Everything here runs in the caller's thread: a refused submission raises a
named error there and changes nothing. In particular every field the journal
will encode is checked, because an encoding failure inside the Dispatcher
would fail a commit that other callers share.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from actorq.errors import InvalidSubmission, NotSerializable

# A delay is a point on the clock that every timer shares; a year is longer
# than any job a queue should hold, and far from where floats lose the
# millisecond.
MAX_DELAY = 366 * 24 * 3600.0
# An attempt longer than a week is a hung job, not a slow one.
MAX_TIMEOUT = 7 * 24 * 3600.0
# Arguments nest at most this deep: deeper structures are refused at submit,
# not found unencodable (JSON, msgpack, Python's recursion limit) after the
# job was accepted.
MAX_DEPTH = 64
MAX_KEY_LENGTH = 512

_SCALARS = (str, int, float, bool, bytes, bytearray, type(None))


def check_delay(delay: Any) -> None:
    if delay is None:
        return
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise InvalidSubmission(f"delay must be a finite number of seconds, not {delay!r}")
    if not 0 <= delay <= MAX_DELAY:
        raise InvalidSubmission(f"delay must be from 0 to {MAX_DELAY:.0f} seconds, not {delay!r}")


def check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        raise InvalidSubmission(
            f"timeout must be a positive number of seconds up to {MAX_TIMEOUT:.0f}, not {timeout!r}"
        )


def check_idempotency_key(key: Any) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not key:
        raise InvalidSubmission("idempotency_key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidSubmission(f"idempotency_key is longer than {MAX_KEY_LENGTH} characters")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidSubmission(
            f"idempotency_key is not valid Unicode text (at index {exc.start}: {exc.reason})"
        ) from None


def check_arguments(payload_size: int, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse arguments nested too deep.

    Each nesting level takes at least one byte of msgpack, so a payload
    shorter than the depth bound needs no walk.
    """
    if payload_size <= MAX_DEPTH:
        return
    for label, value in [*((f"#{i}", a) for i, a in enumerate(args)), *kwargs.items()]:
        problem = _problem(value, 1)
        if problem is not None:
            raise NotSerializable(str(label), problem)


def _problem(value: Any, depth: int) -> str | None:
    if isinstance(value, _SCALARS):
        return None
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _problem(key, depth + 1) or _problem(item, depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, list | tuple):
        for item in value:
            problem = _problem(item, depth + 1)
            if problem is not None:
                return problem
    return None


class Signatures:
    """Each task's signature, read once, to refuse a call that can never work."""

    def __init__(self) -> None:
        self._known: dict[str, inspect.Signature | None] = {}

    def check(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            signature = self._known[name]
        except KeyError:
            try:
                signature = inspect.signature(fn)
            except (TypeError, ValueError):  # a builtin without one: nothing to check
                signature = None
            self._known[name] = signature
        if signature is None:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidSubmission(
                f"arguments do not match task {name!r}{signature}: {exc}"
            ) from None
