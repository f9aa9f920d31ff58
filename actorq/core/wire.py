"""How events are named on the wire: a type tag, a schema version, and upcasters.

An event class is registered with `@event_type(tag, version)`. When an
event's shape changes, its version goes up and an `@upcaster(tag, old)`
turns a stored map of version `old` into version `old + 1`; the codec runs
the chain, so a journal written by any earlier version still replays.
A class that holds nested records defines `to_wire()` and `from_wire(map)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

E = TypeVar("E")
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class EventType:
    cls: type[Any]
    tag: str
    version: int
    fields: tuple[str, ...]


BY_TAG: dict[str, EventType] = {}
BY_CLASS: dict[type[Any], EventType] = {}
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def event_type(tag: str, version: int = 1) -> Callable[[type[E]], type[E]]:
    """Register a dataclass as an event with a type tag and a schema version."""

    def register(cls: type[E]) -> type[E]:
        if tag in BY_TAG and BY_TAG[tag].cls is not cls:
            raise ValueError(f"event tag {tag!r} is already registered")
        names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        entry = EventType(cls, tag, version, names)
        BY_TAG[tag] = entry
        BY_CLASS[cls] = entry
        return cls

    return register


def upcaster(tag: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the step that upgrades a stored `tag` map from `from_version` to the next."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(tag, from_version)] = fn
        return fn

    return register
