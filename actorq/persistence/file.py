"""Durable journal in segment files: the embedded default backend.

An append-only log of checksummed records survives a crash at any byte: a crash
mid-write can only damage the end of the newest segment (a torn tail), which
recovery cuts away with a warning. Damage anywhere else cannot come from a crash,
so it raises `JournalCorrupted` naming the file and byte offset, never a skip.

Layout: ``LOCK`` (flock'ed by the owning process), then per persistence id a
percent-encoded directory holding ``<first seq, 20 digits>.seg`` segments and
``snapshot.bin``. A record is ``<u32 length><u32 crc32(payload)><payload>``,
little-endian, one per `append` (per group commit); its payload is
``msgpack([first_seq, count, encode_batch(events)])``, the batch left opaque so
that opening a journal finds the last sequence without decoding events. The
snapshot file is one such record holding ``{"seq", "state"}``.

``fsync="always"`` fsyncs each append before it returns. ``"batch"`` returns once
the OS has the record and a flusher thread fsyncs within 10 ms (and at close): a
power loss may lose the last 10 ms of acknowledged appends, a process crash loses
nothing. ``"never"`` leaves it to the OS. Snapshots are fsynced in every mode,
because trimming then deletes the segments they replace.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

import msgpack

from actorq.errors import (
    JournalCorrupted,
    JournalError,
    JournalFenced,
    JournalUnavailable,
    SequenceConflict,
)
from actorq.persistence.codec import decode, decode_batch_at, encode, encode_batch
from actorq.persistence.journal import Snapshot

log = logging.getLogger(__name__)

FsyncMode = Literal["always", "batch", "never"]

_HEADER = struct.Struct("<II")
_SNAPSHOT = "snapshot.bin"
_BATCH_WINDOW = 0.010
_READ_BUFFER = 1 << 20
# fdatasync skips the inode times, which recovery never reads.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class _Torn(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset


@dataclass
class _Log:
    directory: Path
    segments: list[tuple[int, Path]] = field(default_factory=list)  # (first seq, path)
    last: int = 0
    tail: IO[bytes] | None = None  # the newest segment, open for appending
    tail_size: int = 0
    dirty: bool = False  # written but not yet fsynced ("batch" mode)
    broken: str | None = None


class FileJournal:
    """A `Journal` in segment files under `directory`; see the module docstring.

    Opening takes an exclusive lock on the directory (a second FileJournal on it,
    in any process, raises `JournalFenced`). A persistence id is recovered on its
    first use. Any thread may call any method; one lock serialises them.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: FsyncMode = "always",
        segment_bytes: int = 64 << 20,
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise ValueError(f"fsync must be 'always', 'batch' or 'never', not {fsync!r}")
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        self._root = Path(directory)
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._logs: dict[str, _Log] = {}
        self._closed = False
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_directory(self._root)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        if fsync == "batch":
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"actorq-fsync:{self._root}", daemon=True
            )
            self._flusher.start()

    def append(self, persistence_id: str, events: Sequence[Any], *, after_seq: int) -> None:
        payload = encode([after_seq + 1, len(events), encode_batch(events)])
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            entry = self._log(persistence_id)
            if entry.broken:
                raise JournalUnavailable(entry.broken)
            if entry.last != after_seq:
                raise SequenceConflict(persistence_id, after_seq, entry.last)
            if not events:
                return
            try:
                self._write(entry, record, after_seq + 1)
            except OSError as exc:
                # A half-written record is cut as a torn tail when the journal is reopened;
                # after a failed fsync the page cache can no longer be trusted either.
                entry.broken = f"writing to {entry.directory} failed ({exc}); reopen the journal"
                raise JournalUnavailable(entry.broken) from exc
            entry.last = after_seq + len(events)
        if self._fsync == "batch":
            self._wake.set()

    def replay(self, persistence_id: str, *, after_seq: int = 0) -> Iterator[tuple[int, Any]]:
        with self._lock:
            entry = self._log(persistence_id)
            # Bound the read to what is committed now: a concurrent append is not torn data.
            segments, tail_end = list(entry.segments), entry.tail_size
        return _read(segments, tail_end, after_seq)

    def last_seq(self, persistence_id: str) -> int:
        with self._lock:
            return self._log(persistence_id).last

    def save_snapshot(self, persistence_id: str, snapshot: Snapshot) -> None:
        payload = encode({"seq": snapshot.seq, "state": snapshot.state})
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            entry = self._log(persistence_id)
            if not 0 <= snapshot.seq <= entry.last:
                raise ValueError(f"snapshot at {snapshot.seq} is past the log's end ({entry.last})")
            path = entry.directory / _SNAPSHOT
            temporary = path.with_name(_SNAPSHOT + ".tmp")
            try:
                self._ensure_directory(entry)
                with temporary.open("wb") as f:
                    f.write(record)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, path)
                _fsync_directory(entry.directory)
                _trim(entry, snapshot.seq)
            except OSError as exc:
                raise JournalUnavailable(f"saving snapshot in {entry.directory}: {exc}") from exc

    def load_snapshot(self, persistence_id: str) -> Snapshot | None:
        with self._lock:
            path = self._log(persistence_id).directory / _SNAPSHOT
        return _read_snapshot(path)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                for entry in self._logs.values():
                    _close_tail(entry)
            finally:
                os.close(self._lock_fd)  # releases the flock

    def _log(self, persistence_id: str) -> _Log:
        if self._closed:
            raise JournalUnavailable(f"the FileJournal at {self._root} is closed")
        entry = self._logs.get(persistence_id)
        if entry is None:
            entry = _recover(self._root / _directory_name(persistence_id))
            self._logs[persistence_id] = entry
        return entry

    def _write(self, entry: _Log, record: bytes, first_seq: int) -> None:
        fits = entry.tail_size == 0 or entry.tail_size + len(record) <= self._segment_bytes
        if not (entry.segments and fits):
            _close_tail(entry)
            self._ensure_directory(entry)
            path = entry.directory / f"{first_seq:020d}.seg"
            path.touch()
            if self._fsync != "never":
                _fsync_directory(entry.directory)
            entry.segments.append((first_seq, path))
            entry.tail_size = 0
        if entry.tail is None:
            entry.tail = entry.segments[-1][1].open("ab")
        entry.tail.write(record)
        entry.tail.flush()
        entry.tail_size += len(record)
        if self._fsync == "always":
            _datasync(entry.tail.fileno())
        elif self._fsync == "batch":
            entry.dirty = True

    def _ensure_directory(self, entry: _Log) -> None:
        if not entry.directory.is_dir():
            entry.directory.mkdir()
            _fsync_directory(self._root)

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.wait(_BATCH_WINDOW):
                return  # close() syncs what is left
            with self._lock:
                self._wake.clear()
                for entry in self._logs.values():
                    try:
                        _sync(entry)
                    except OSError as exc:
                        entry.broken = f"fsync in {entry.directory} failed ({exc}); reopen"
                        log.error("%s", entry.broken)


def _directory_name(persistence_id: str) -> str:
    """A file name unique to the id; percent-encoding keeps it readable and reversible."""
    if not persistence_id:
        raise ValueError("a persistence id must not be empty")
    name = quote(persistence_id, safe="")
    if name.startswith(".") or name == "LOCK":  # ".", "..", hidden files, our lock file
        name = f"%{ord(name[0]):02X}{name[1:]}"
    if len(name) > 200:  # most file systems stop at 255 bytes; a hash keeps it unique
        name = f"{name[:150]}~{hashlib.sha256(persistence_id.encode()).hexdigest()}"
    return name


def _lock_directory(root: Path) -> int:
    fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise JournalFenced(
            f"the journal directory {root} is in use by another FileJournal (process"
            f" {holder}); two writers would corrupt it, so close that one first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _recover(directory: Path) -> _Log:
    """Scan a persistence id's segments: find the last event, cut a torn tail."""
    (directory / (_SNAPSHOT + ".tmp")).unlink(missing_ok=True)
    snapshot = _read_snapshot(directory / _SNAPSHOT)
    snapshot_seq = snapshot.seq if snapshot else 0
    entry = _Log(directory)
    if directory.is_dir():
        paths = (p for p in directory.glob("*.seg") if p.stem.isdigit())
        entry.segments = sorted((int(p.stem), p) for p in paths)
    expected = entry.segments[0][0] if entry.segments else snapshot_seq + 1
    if expected > snapshot_seq + 1:
        raise JournalCorrupted(
            str(entry.segments[0][1]), 0, f"events {snapshot_seq + 1}..{expected - 1} are missing"
        )
    for index, (first, path) in enumerate(entry.segments):
        if first != expected:
            raise JournalCorrupted(str(path), 0, f"segment starts at {first}, not {expected}")
        with path.open("rb", buffering=_READ_BUFFER) as f:
            entry.tail_size = os.fstat(f.fileno()).st_size
            newest = index == len(entry.segments) - 1
            try:
                for offset, payload in _records(f, path, entry.tail_size, tail=newest):
                    start, count, _batch = _parse(payload, path, offset, expected)
                    expected = start + count
            except _Torn as torn:
                log.warning("cutting torn tail of %s at byte %d: %s", path, torn.offset, torn)
                with path.open("r+b") as w:
                    w.truncate(torn.offset)
                    os.fsync(w.fileno())
                entry.tail_size = torn.offset
    entry.last = expected - 1
    _trim(entry, snapshot_seq)
    entry.last = max(entry.last, snapshot_seq)
    return entry


def _trim(entry: _Log, seq: int) -> None:
    """Delete the oldest segments while every event in them is at or below `seq`.

    Recovery calls it again, which completes a trim that a crash interrupted.
    """
    while entry.segments:
        newest = len(entry.segments) == 1
        upper = entry.last if newest else entry.segments[1][0] - 1
        if upper > seq:
            return
        if newest:
            _close_tail(entry)
            entry.tail_size = 0
        entry.segments.pop(0)[1].unlink()


def _close_tail(entry: _Log) -> None:
    if entry.tail is not None:
        _sync(entry)
        entry.tail.close()
        entry.tail = None


def _sync(entry: _Log) -> None:
    if entry.dirty and entry.tail is not None:
        _datasync(entry.tail.fileno())
        entry.dirty = False


def _records(f: IO[bytes], path: Path, end: int, *, tail: bool) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, payload)`` of each record in the first `end` bytes of `f`.

    With `tail`, damage a crash mid-write can leave (a final record cut short or
    with a bad checksum) raises `_Torn`; other damage raises `JournalCorrupted`.
    """
    offset = 0
    while offset < end:
        header = f.read(_HEADER.size) if end - offset >= _HEADER.size else b""
        if len(header) < _HEADER.size:
            reason = f"record header cut short ({end - offset} bytes left)"
            raise _damage(path, offset, reason, torn=tail)
        length, crc = _HEADER.unpack(header)
        stop = offset + _HEADER.size + length
        if stop > end:
            reason = f"record length {length} runs past the end ({end})"
            raise _damage(path, offset, reason, torn=tail)
        payload = f.read(length)
        if len(payload) != length:
            raise _damage(path, offset, "the file shrank while being read", torn=False)
        if zlib.crc32(payload) != crc:
            raise _damage(path, offset, "checksum mismatch", torn=tail and stop == end)
        yield offset, payload
        offset = stop


def _damage(path: Path, offset: int, reason: str, *, torn: bool) -> Exception:
    return _Torn(offset, reason) if torn else JournalCorrupted(str(path), offset, reason)


def _parse(payload: bytes, path: Path, offset: int, expected: int) -> tuple[int, int, bytes]:
    """The ``(first_seq, count, batch)`` of a record that must start at `expected`."""
    try:
        start, count, batch = decode(payload)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise JournalCorrupted(str(path), offset, f"undecodable record: {exc!r}") from exc
    if not (isinstance(start, int) and isinstance(count, int) and isinstance(batch, bytes)):
        raise JournalCorrupted(str(path), offset, "record is not [first_seq, count, batch]")
    if start != expected or count < 1:
        raise JournalCorrupted(
            str(path),
            offset,
            f"sequence gap: record holds {start}..{start + count - 1}, expected {expected}",
        )
    return start, count, batch


def _read(
    segments: list[tuple[int, Path]], tail_end: int, after_seq: int
) -> Iterator[tuple[int, Any]]:
    for index, (first, path) in enumerate(segments):
        newest = index == len(segments) - 1
        if not newest and segments[index + 1][0] - 1 <= after_seq:
            continue
        try:
            f = path.open("rb", buffering=_READ_BUFFER)
        except FileNotFoundError:
            raise JournalError(f"{path} was trimmed by a snapshot during replay") from None
        with f:
            end = tail_end if newest else os.fstat(f.fileno()).st_size
            expected = first
            for offset, payload in _records(f, path, end, tail=False):
                start, count, batch = _parse(payload, path, offset, expected)
                expected = start + count
                if expected - 1 <= after_seq:
                    continue
                events = decode_batch_at(batch, str(path), offset)
                if len(events) != count:
                    raise JournalCorrupted(str(path), offset, f"{len(events)} events, not {count}")
                skip = max(0, after_seq + 1 - start)
                yield from zip(range(start + skip, expected), events[skip:], strict=True)


def _read_snapshot(path: Path) -> Snapshot | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    records = list(_records(io.BytesIO(data), path, len(data), tail=False))
    try:
        ((_offset, payload),) = records
        content = decode(payload)
        seq, state = content["seq"], content["state"]
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise JournalCorrupted(str(path), 0, f"unreadable snapshot: {exc!r}") from exc
    if not isinstance(seq, int):
        raise JournalCorrupted(str(path), 0, f"snapshot sequence {seq!r} is not a number")
    return Snapshot(seq=seq, state=state)


def _fsync_directory(path: Path) -> None:
    """Make a created, renamed or deleted entry in `path` survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
