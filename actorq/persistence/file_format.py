"""The file journal's bytes on disk: segment headers, records, seals and snapshots.

Version 1 (written since the format carried a version):

- a segment starts with ``<4s "AQJS"><u16 version><u16 0><u64 first_seq><u32 crc32>``,
  the checksum over the 16 bytes before it, so a renamed file is noticed;
- a record is ``<4s "AQR1"><u32 length><u64 first_seq><u32 count><u32 crc32(batch)>
  <u32 crc32(the 24 header bytes before it)>``, then the batch, then one end byte
  0xA5. The header checksum covers the length, so a damaged length is never
  mistaken for a record that a crash cut short; the end byte is the last thing
  a write reaches, so a record whose end was never written is told apart from
  one damaged after it was;
- a seal is a record with ``count == 0`` whose ``first_seq`` names the next
  segment: written when a segment is closed, it makes a deleted newest segment
  visible;
- the snapshot is ``<4s "AQSN"><u16 version><u16 0><u32 length><u32 crc32>``, the
  checksum over the 12 header bytes before it and the body, then the body
  ``msgpack({"seq", "segment", "state"})``, where ``segment`` names the oldest
  segment the snapshot keeps, so a deleted one is missed.

Version 0 has no segment header; a record is ``<u32 length><u32 crc32(payload)>``
then ``msgpack([first_seq, count, batch])``; the snapshot is one such record
holding ``{"seq", "state"}``. It is still read; a seal in a version 0 segment is
a version 0 record with ``count == 0``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgpack

from actorq.errors import JournalCorrupted
from actorq.persistence.codec import decode, encode
from actorq.persistence.journal import Snapshot

SEGMENT = struct.Struct("<4sHHQI")
RECORD = struct.Struct("<4sIQIII")
_RECORD_V0 = struct.Struct("<II")
_SNAPSHOT = struct.Struct("<4sHHII")
_SEGMENT_MAGIC = b"AQJS"
_RECORD_MAGIC = b"AQR1"
_SNAPSHOT_MAGIC = b"AQSN"
_END = 0xA5
VERSION = 1


class Damaged(Exception):
    """A record at `offset` is not whole; the caller decides: torn tail or corruption."""

    def __init__(self, offset: int, reason: str, *, torn_v0: bool = False) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        self.torn_v0 = torn_v0  # what version 0 took for a torn tail


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    first: int
    count: int  # 0 for a seal, whose `first` is the next segment's first sequence
    batch: bytes
    end: int


def segment_header(first: int) -> bytes:
    head = struct.pack("<4sHHQ", _SEGMENT_MAGIC, VERSION, 0, first)
    return head + struct.pack("<I", zlib.crc32(head))


def record(first: int, count: int, batch: bytes) -> bytes:
    head = struct.pack("<4sIQII", _RECORD_MAGIC, len(batch), first, count, zlib.crc32(batch))
    return head + struct.pack("<I", zlib.crc32(head)) + batch + bytes([_END])


def seal(version: int, next_first: int) -> bytes:
    if version == 0:
        payload = encode([next_first, 0, b""])
        return _RECORD_V0.pack(len(payload), zlib.crc32(payload)) + payload
    return record(next_first, 0, b"")


def segment_version(f: IO[bytes], path: Path, first: int) -> int | None:
    """The format version of the segment `f`; None if a crash cut its header short.

    A version 0 segment has no header: it is recognised by a whole first record,
    so a damaged version 1 header is never read as the older format.
    """
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    head = f.read(SEGMENT.size)
    if head[:4] == _SEGMENT_MAGIC and len(head) == SEGMENT.size:
        _magic, version, _zero, named, crc = SEGMENT.unpack(head)
        if zlib.crc32(head[:-4]) != crc:
            raise JournalCorrupted(str(path), 0, "segment header checksum mismatch")
        if version != VERSION:
            raise JournalCorrupted(str(path), 0, f"unknown segment format version {version}")
        if named != first:
            raise JournalCorrupted(str(path), 0, f"header says it starts at {named}, not {first}")
        return VERSION
    if len(head) >= _RECORD_V0.size:
        length, crc = _RECORD_V0.unpack_from(head)
        if _RECORD_V0.size + length <= size:
            f.seek(_RECORD_V0.size)
            if zlib.crc32(f.read(length)) == crc:
                return 0
    if size < SEGMENT.size or (size == SEGMENT.size and not any(head)):
        return None
    raise JournalCorrupted(str(path), 0, "segment header damaged")


def records(f: IO[bytes], path: Path, version: int, offset: int, end: int) -> Iterator[Record]:
    """Each whole record from `offset` to `end`; raises `Damaged` at the first that is not."""
    f.seek(offset)
    read = _read_v1 if version else _read_v0
    while offset < end:
        found = read(f, path, offset, end)
        yield found
        offset = found.end


def _read_v1(f: IO[bytes], path: Path, offset: int, end: int) -> Record:
    head = f.read(RECORD.size) if end - offset >= RECORD.size else b""
    if len(head) < RECORD.size:
        raise Damaged(offset, f"record header cut short ({end - offset} bytes left)")
    magic, length, first, count, crc, head_crc = RECORD.unpack(head)
    if magic != _RECORD_MAGIC:
        raise Damaged(offset, "no record starts here")
    if zlib.crc32(head[:-4]) != head_crc:
        raise Damaged(offset, "record header checksum mismatch")
    stop = offset + RECORD.size + length + 1
    if stop > end:
        raise Damaged(offset, f"record of {length} bytes runs past the end ({end})")
    body = f.read(length + 1)
    if len(body) != length + 1:
        raise JournalCorrupted(str(path), offset, "the file shrank while being read")
    if body[-1] != _END:
        raise Damaged(offset, "record end marker missing")
    batch = body[:-1]
    if zlib.crc32(batch) != crc:
        raise Damaged(offset, "checksum mismatch")
    return Record(offset, first, count, batch, stop)


def _read_v0(f: IO[bytes], path: Path, offset: int, end: int) -> Record:
    head = f.read(_RECORD_V0.size) if end - offset >= _RECORD_V0.size else b""
    if len(head) < _RECORD_V0.size:
        reason = f"record header cut short ({end - offset} bytes left)"
        raise Damaged(offset, reason, torn_v0=True)
    length, crc = _RECORD_V0.unpack(head)
    stop = offset + _RECORD_V0.size + length
    if stop > end:
        raise Damaged(offset, f"record length {length} runs past the end ({end})", torn_v0=True)
    payload = f.read(length)
    if len(payload) != length:
        raise JournalCorrupted(str(path), offset, "the file shrank while being read")
    if zlib.crc32(payload) != crc:
        raise Damaged(offset, "checksum mismatch", torn_v0=stop == end)
    try:
        first, count, batch = decode(payload)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise JournalCorrupted(str(path), offset, f"undecodable record: {exc!r}") from exc
    if not (isinstance(first, int) and isinstance(count, int) and isinstance(batch, bytes)):
        raise JournalCorrupted(str(path), offset, "record is not [first_seq, count, batch]")
    return Record(offset, first, count, batch, stop)


def torn(rest: bytes, version: int, damaged: Damaged) -> str | None:
    """Why the bytes from a damaged record to the end are what a crash leaves, or None.

    A crash mid-write leaves the last record cut short, or the bytes it never
    wrote as zeros (a power loss after the file grew). It never leaves a whole
    record after a damaged one, nor a record whose end was written but whose
    middle does not match its checksum.
    """
    if not rest.strip(b"\0"):
        return "zero-filled tail"
    if version == 0:
        return damaged.reason if damaged.torn_v0 else None
    if following_record(rest) is not None:
        return None
    if len(rest) < RECORD.size:
        return "record header cut short"
    if not rest[RECORD.size :].strip(b"\0"):
        return "record body never written"
    magic, length, _first, _count, _crc, head_crc = RECORD.unpack_from(rest)
    if magic == _RECORD_MAGIC and zlib.crc32(rest[: RECORD.size - 4]) == head_crc:
        stop = RECORD.size + length
        if stop >= len(rest):
            return "last record cut short"
        if rest[stop] == 0:  # any other value than the marker was written, then damaged
            return "last record's end never written"
    return None


def _starts(rest: bytes) -> Iterator[int]:
    """Offsets after the first byte at which a whole version 1 record starts."""
    at = rest.find(_RECORD_MAGIC, 1)
    while at != -1:
        head = rest[at : at + RECORD.size]
        if len(head) == RECORD.size:
            _magic, length, _first, _count, crc, head_crc = RECORD.unpack(head)
            stop = at + RECORD.size + length
            if (
                zlib.crc32(head[:-4]) == head_crc
                and stop < len(rest)
                and rest[stop] == _END
                and zlib.crc32(rest[at + RECORD.size : stop]) == crc
            ):
                yield at
        at = rest.find(_RECORD_MAGIC, at + 1)


def following_record(rest: bytes) -> int | None:
    """The offset in `rest` of the first whole record after its first byte, if any."""
    return next(_starts(rest), None)


def snapshot_bytes(snapshot: Snapshot, segment: int) -> bytes:
    body = encode({"seq": snapshot.seq, "segment": segment, "state": snapshot.state})
    head = struct.pack("<4sHHI", _SNAPSHOT_MAGIC, VERSION, 0, len(body))
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


def parse_snapshot(data: bytes, path: Path) -> tuple[Snapshot, int | None]:
    """The snapshot in a file's bytes and the oldest segment it keeps (None in version 0)."""
    where = str(path)
    if data[:4] == _SNAPSHOT_MAGIC:
        if len(data) < _SNAPSHOT.size:
            raise JournalCorrupted(where, 0, f"snapshot header cut short ({len(data)} bytes)")
        _magic, version, _zero, length, crc = _SNAPSHOT.unpack_from(data)
        if version != VERSION:
            raise JournalCorrupted(where, 0, f"unknown snapshot format version {version}")
        body = data[_SNAPSHOT.size :]
        if len(body) != length:
            raise JournalCorrupted(where, 0, f"snapshot body is {len(body)} bytes, not {length}")
        if zlib.crc32(body, zlib.crc32(data[: _SNAPSHOT.size - 4])) != crc:
            raise JournalCorrupted(where, 0, "snapshot checksum mismatch")
        offset = _SNAPSHOT.size
    else:
        if len(data) < _RECORD_V0.size:
            raise JournalCorrupted(where, 0, f"snapshot cut short ({len(data)} bytes)")
        length, crc = _RECORD_V0.unpack_from(data)
        body = data[_RECORD_V0.size :]
        if len(body) != length or zlib.crc32(body) != crc:
            raise JournalCorrupted(where, 0, "snapshot length or checksum mismatch")
        offset = _RECORD_V0.size
    try:
        content: Any = decode(body)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise JournalCorrupted(where, offset, f"undecodable snapshot: {exc!r}") from exc
    if not (isinstance(content, dict) and "state" in content):
        raise JournalCorrupted(where, offset, "snapshot is not a map with a state")
    seq, segment = content.get("seq"), content.get("segment")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0):
        raise JournalCorrupted(where, offset, f"snapshot sequence {seq!r} is not a count")
    if data[:4] == _SNAPSHOT_MAGIC and not (isinstance(segment, int) and 1 <= segment <= seq + 1):
        raise JournalCorrupted(where, offset, f"snapshot names no valid segment ({segment!r})")
    return Snapshot(seq=seq, state=content["state"]), segment
