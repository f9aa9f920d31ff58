"""Versioned msgpack encoding of events and snapshots. Never pickle.

An event is a frozen dataclass registered with `@event_type(tag, version)`
(`actorq.core.wire`). On the wire it is a msgpack map ``{"t": tag, "v":
version, **fields}``; a batch is a msgpack array of such maps. A map of an
older version is upgraded by the registered upcasters before it is built.
Tuples decode as lists: event classes declare plain msgpack types (str, int,
float, bool, None, bytes, list, dict), or nest records through `to_wire` and
`from_wire`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from actorq.core.wire import BY_CLASS, BY_TAG, UPCASTERS, event_type
from actorq.errors import JournalCorrupted, UnknownEventVersion

__all__ = ["decode", "decode_batch", "encode", "encode_batch", "event_type"]


def registered_event_types() -> dict[str, type[Any]]:
    return {tag: entry.cls for tag, entry in BY_TAG.items()}


def event_to_map(event: Any) -> dict[str, Any]:
    entry = BY_CLASS[type(event)]
    data: dict[str, Any] = {"t": entry.tag, "v": entry.version}
    if hasattr(event, "to_wire"):
        data.update(event.to_wire())
        return data
    for name in entry.fields:
        data[name] = getattr(event, name)
    return data


def event_from_map(data: dict[str, Any]) -> Any:
    try:
        tag = data.pop("t")
        version = data.pop("v")
    except (KeyError, AttributeError, TypeError) as exc:
        raise JournalCorrupted("event", 0, f"record is not an event map: {exc}") from exc
    entry = BY_TAG.get(tag)
    if entry is None:
        raise JournalCorrupted("event", 0, f"unknown event type {tag!r}")
    if not isinstance(version, int) or version > entry.version or version < 1:
        raise UnknownEventVersion(
            str(tag), int(version) if isinstance(version, int) else -1, entry.version
        )
    while version < entry.version:  # an event written by an earlier version: upgrade it
        step = UPCASTERS.get((tag, version))
        if step is None:
            raise UnknownEventVersion(str(tag), version, entry.version)
        data = step(data)
        version += 1
    if hasattr(entry.cls, "from_wire"):
        return entry.cls.from_wire(data)
    return entry.cls(**data)


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
