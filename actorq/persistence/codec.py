"""Versioned msgpack encoding of events and snapshots. Never pickle.

An event is a frozen dataclass registered with `@event_type(tag, version)`.
On the wire it is a msgpack map ``{"t": tag, "v": version, **fields}``; a
batch is a msgpack array of such maps. Tuples decode as lists, so event
fields that must stay tuples are converted back in the class's
``__post_init__``-free way: the decoder passes fields by name and each event
class declares plain msgpack types (str, int, float, bool, None, bytes,
list, dict).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgpack

from actorq.errors import JournalCorrupted, UnknownEventVersion

E = TypeVar("E")

_by_tag: dict[str, tuple[type[Any], int, tuple[str, ...]]] = {}
_by_class: dict[type[Any], tuple[str, int, tuple[str, ...]]] = {}


def event_type(tag: str, version: int = 1) -> Callable[[type[E]], type[E]]:
    """Register a dataclass as an event with a type tag and a schema version."""

    def register(cls: type[E]) -> type[E]:
        if tag in _by_tag and _by_tag[tag][0] is not cls:
            raise ValueError(f"event tag {tag!r} is already registered")
        names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        _by_tag[tag] = (cls, version, names)
        _by_class[cls] = (tag, version, names)
        return cls

    return register


def registered_event_types() -> dict[str, type[Any]]:
    return {tag: entry[0] for tag, entry in _by_tag.items()}


def event_to_map(event: Any) -> dict[str, Any]:
    tag, version, names = _by_class[type(event)]
    data: dict[str, Any] = {"t": tag, "v": version}
    for name in names:
        data[name] = getattr(event, name)
    return data


def event_from_map(data: dict[str, Any]) -> Any:
    try:
        tag = data.pop("t")
        version = data.pop("v")
    except (KeyError, AttributeError, TypeError) as exc:
        raise JournalCorrupted("event", 0, f"record is not an event map: {exc}") from exc
    entry = _by_tag.get(tag)
    if entry is None:
        raise JournalCorrupted("event", 0, f"unknown event type {tag!r}")
    cls, known, _names = entry
    if not isinstance(version, int) or version > known or version < 1:
        raise UnknownEventVersion(str(tag), int(version) if isinstance(version, int) else -1, known)
    return cls(**data)


def encode(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode_batch(events: Sequence[Any]) -> bytes:
    return encode([event_to_map(e) for e in events])


def decode_batch(data: bytes) -> list[Any]:
    maps = decode(data)
    if not isinstance(maps, list):
        raise JournalCorrupted("batch", 0, "record is not an array of events")
    return [event_from_map(m) for m in maps]


def decode_batch_at(data: bytes, where: str, offset: int) -> list[Any]:
    """`decode_batch` for a stored record: corruption is reported at `where` and `offset`.

    msgpack signals garbage with several unrelated exception types, and an event map
    with the wrong fields fails in the dataclass constructor; all of them mean the
    record is corrupt. `UnknownEventVersion` passes through: the data is fine, the
    reader is too old.
    """
    try:
        return decode_batch(data)
    except JournalCorrupted as exc:
        raise JournalCorrupted(where, offset, exc.reason) from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise JournalCorrupted(where, offset, f"undecodable batch: {exc!r}") from exc
