"""Durable journal in segment files: the embedded default backend.

An append-only log of checksummed records survives a crash at any byte: a crash
mid-write can only damage the end of the newest segment (a torn tail: a record
cut short, or bytes never written left as zeros), which recovery cuts away with
a warning. Damage a crash cannot cause (a whole record after a damaged one, a
checksum failure in a record whose end was written, a missing or renamed
segment, a snapshot ahead of the log) raises `JournalCorrupted` naming the file
and byte offset; recovery never deletes an acknowledged record to get past it.
The bytes are described in `actorq.persistence.file_format`.

Layout: ``LOCK`` (flock'ed by the owning process), then per persistence id a
percent-encoded directory holding ``<first seq, 20 digits>.seg`` segments and
``snapshot.bin``. One record per `append` (per group commit). A full segment is
closed by a seal naming the next one; the newest segment is never trimmed, and
the snapshot names the oldest segment it keeps, so a deleted segment, first,
middle or newest, is detected.

``fsync="always"`` fsyncs each append before it returns. ``"batch"`` returns once
the OS has the record and a flusher thread fsyncs within 10 ms (and at close): a
power loss may lose the last 10 ms of acknowledged appends, a process crash loses
nothing. ``"never"`` leaves it to the OS, and so gives no guarantee across a
power loss. Snapshots are fsynced in every mode, because trimming then deletes
the segments they replace.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

from actorq import faults
from actorq.errors import (
    JournalCorrupted,
    JournalError,
    JournalFenced,
    JournalUnavailable,
    SequenceConflict,
)
from actorq.persistence import file_format as fmt
from actorq.persistence.codec import decode_batch_at, encode_batch
from actorq.persistence.journal import Snapshot

log = logging.getLogger(__name__)

FsyncMode = Literal["always", "batch", "never"]

_SNAPSHOT = "snapshot.bin"
_BATCH_WINDOW = 0.010
_READ_BUFFER = 1 << 20
# fdatasync skips the inode times, which recovery never reads.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


@dataclass
class _Log:
    directory: Path
    segments: list[tuple[int, Path]] = field(default_factory=list)  # (first seq, path)
    last: int = 0
    tail: IO[bytes] | None = None  # the newest segment, open for appending
    tail_size: int = 0
    tail_version: int = fmt.VERSION
    dirty: bool = False  # written but not yet fsynced ("batch" mode)
    broken: str | None = None

    @property
    def tail_empty(self) -> bool:
        return self.tail_version == fmt.VERSION and self.tail_size <= fmt.SEGMENT.size


class FileJournal:
    """A `Journal` in segment files under `directory`; see the module docstring.

    Opening takes an exclusive lock on the directory (a second FileJournal on it,
    in any process, raises `JournalFenced`). A persistence id is recovered on its
    first use, by whichever method is called first, in the calling thread; a
    damaged log raises `JournalCorrupted` there. Any thread may call any method;
    one lock serialises them.
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
        faults.point("journal.append", persistence_id)
        record = fmt.record(after_seq + 1, len(events), encode_batch(events))
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
        faults.point("journal.read", persistence_id)
        with self._lock:
            entry = self._log(persistence_id)
            # Bound the read to what is committed now: a concurrent append is not torn data.
            segments, tail_end = list(entry.segments), entry.tail_size
        return _read(segments, tail_end, after_seq)

    def last_seq(self, persistence_id: str) -> int:
        with self._lock:
            return self._log(persistence_id).last

    def save_snapshot(self, persistence_id: str, snapshot: Snapshot) -> None:
        with self._lock:
            entry = self._log(persistence_id)
            if not 0 <= snapshot.seq <= entry.last:
                raise ValueError(f"snapshot at {snapshot.seq} is past the log's end ({entry.last})")
            floor = entry.segments[0][0] - 1 if entry.segments else entry.last
            if snapshot.seq < floor:
                raise ValueError(f"snapshot at {snapshot.seq} is behind the trimmed log ({floor})")
            path = entry.directory / _SNAPSHOT
            temporary = path.with_name(_SNAPSHOT + ".tmp")
            try:
                # The events the snapshot covers must be on disk before it is, or a power
                # loss could leave a snapshot ahead of the log.
                _sync(entry)
                if not entry.segments or (snapshot.seq == entry.last and not entry.tail_empty):
                    # The newest segment is never trimmed; an empty one keeps the chain.
                    self._roll_over(entry, entry.last + 1)
                kept = _first_kept(entry, snapshot.seq)
                with temporary.open("wb") as f:
                    f.write(fmt.snapshot_bytes(snapshot, kept))
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
        found = _read_snapshot(path)
        return found[0] if found else None

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
        fits = entry.tail_empty or (
            entry.tail_version == fmt.VERSION
            and entry.tail_size + len(record) <= self._segment_bytes
        )
        if not (entry.segments and fits):
            self._roll_over(entry, first_seq)
        if entry.tail is None:
            entry.tail = entry.segments[-1][1].open("ab")
        faults.before_write("journal.write", entry.directory.name, entry.tail, record)
        entry.tail.write(record)
        entry.tail.flush()
        entry.tail_size += len(record)
        if self._fsync == "always":
            _datasync(entry.tail.fileno())
        elif self._fsync == "batch":
            entry.dirty = True

    def _roll_over(self, entry: _Log, first_seq: int) -> None:
        """Start the segment holding `first_seq` on, then seal the one before it.

        In this order a crash leaves either no new segment, or a new empty one after
        a segment whose seal may be torn (recovery completes it), never a seal naming
        a segment that does not exist.
        """
        durable = self._fsync != "never"
        self._ensure_directory(entry)
        path = entry.directory / f"{first_seq:020d}.seg"
        with path.open("wb") as f:
            f.write(fmt.segment_header(first_seq))
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if durable:
            _fsync_directory(entry.directory)
        if entry.segments:
            if entry.tail is None:
                entry.tail = entry.segments[-1][1].open("ab")
            entry.tail.write(fmt.seal(entry.tail_version, first_seq))
            entry.tail.flush()
            entry.dirty = True
            if durable:
                _sync(entry)
        _close_tail(entry)
        entry.segments.append((first_seq, path))
        entry.tail_size = fmt.SEGMENT.size
        entry.tail_version = fmt.VERSION

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
    """Check a persistence id's files end to end; cut a torn tail; raise on anything else."""
    (directory / (_SNAPSHOT + ".tmp")).unlink(missing_ok=True)
    snapshot_path = directory / _SNAPSHOT
    found = _read_snapshot(snapshot_path)
    snapshot_seq, kept = (found[0].seq, found[1]) if found else (0, None)
    entry = _Log(directory)
    if directory.is_dir():
        paths = (p for p in directory.glob("*.seg") if p.stem.isdigit())
        entry.segments = sorted((int(p.stem), p) for p in paths)
    firsts = [first for first, _path in entry.segments]
    if kept is not None and kept not in firsts:
        raise JournalCorrupted(
            str(directory / f"{kept:020d}.seg"),
            0,
            f"segment missing: the snapshot at {snapshot_seq} keeps the events after it there",
        )
    expected = firsts[0] if firsts else snapshot_seq + 1
    if expected > snapshot_seq + 1:
        raise JournalCorrupted(
            str(entry.segments[0][1]), 0, f"events {snapshot_seq + 1}..{expected - 1} are missing"
        )
    sealed: int | None = None
    for index, (first, path) in enumerate(entry.segments):
        if first != expected:
            after = f" (after {entry.segments[index - 1][1].name})" if index else ""
            raise JournalCorrupted(
                str(path),
                0,
                f"segment starts at {first}, not {expected}: events {expected}..{first - 1}"
                f" are missing{after}",
            )
        newest = index == len(entry.segments) - 1
        # A crash while a segment is being closed can tear its seal, with the next
        # segment already created and still empty.
        second = index == len(entry.segments) - 2
        may_be_torn = newest or (second and _size(entry.segments[-1][1]) <= fmt.SEGMENT.size)
        expected, sealed = _recover_segment(entry, path, first, newest=newest, torn=may_be_torn)
        if second and sealed is None:
            _append_seal(path, entry.segments[-1][0])
    if sealed is not None:
        missing = entry.directory / f"{sealed:020d}.seg"
        raise JournalCorrupted(
            str(entry.segments[-1][1]),
            entry.tail_size,
            f"the segment is sealed: events from {sealed} on are in {missing}, which is missing",
        )
    entry.last = expected - 1
    if entry.segments and entry.last < snapshot_seq:
        raise JournalCorrupted(
            str(snapshot_path),
            0,
            f"snapshot at {snapshot_seq} is from the future: the log ends at {entry.last}",
        )
    _trim(entry, snapshot_seq)
    entry.last = max(entry.last, snapshot_seq)
    return entry


def _size(path: Path) -> int:
    return path.stat().st_size


def _recover_segment(
    entry: _Log, path: Path, first: int, *, newest: bool, torn: bool
) -> tuple[int, int | None]:
    """The next expected sequence after `path`, and the segment its seal names, if any."""
    with path.open("rb", buffering=_READ_BUFFER) as f:
        size = os.fstat(f.fileno()).st_size
        version = fmt.segment_version(f, path, first)
        if version is None:
            if not newest:
                raise JournalCorrupted(str(path), 0, "segment header cut short")
            log.warning("rewriting the header of %s, cut short by a crash", path)
            _rewrite_header(path, first)
            version, size = fmt.VERSION, fmt.SEGMENT.size
        start = fmt.SEGMENT.size if version else 0
        expected, sealed = first, None
        try:
            for record in fmt.records(f, path, version, start, size):
                if sealed is not None:
                    raise JournalCorrupted(str(path), record.offset, "a record after the seal")
                if record.first != expected:
                    raise JournalCorrupted(
                        str(path),
                        record.offset,
                        f"sequence gap: record holds {record.first}.., expected {expected}",
                    )
                if record.count == 0:
                    sealed = record.first
                expected += record.count
        except fmt.Damaged as damaged:
            if not torn:
                raise JournalCorrupted(str(path), damaged.offset, damaged.reason) from None
            f.seek(damaged.offset)
            rest = f.read(size - damaged.offset)
            why = fmt.torn(rest, version, damaged)
            if why is None:
                at = fmt.following_record(rest) if version else None
                reason = damaged.reason + (
                    f"; a whole record follows at {damaged.offset + at}, so no crash left it"
                    if at is not None
                    else "; not what a crash leaves"
                )
                raise JournalCorrupted(str(path), damaged.offset, reason) from None
            log.warning(
                "cutting torn tail of %s at byte %d (%d bytes, events from %d on never"
                " completed): %s",
                path,
                damaged.offset,
                size - damaged.offset,
                expected,
                why,
            )
            with path.open("r+b") as w:
                w.truncate(damaged.offset)
                os.fsync(w.fileno())
            size = damaged.offset
    if newest:
        entry.tail_size, entry.tail_version = size, version
    return expected, sealed


def _rewrite_header(path: Path, first: int) -> None:
    with path.open("wb") as f:
        f.write(fmt.segment_header(first))
        f.flush()
        os.fsync(f.fileno())


def _append_seal(path: Path, next_first: int) -> None:
    """Complete a roll-over a crash interrupted, so that the next segment is missed if lost."""
    with path.open("rb") as f:
        version = fmt.segment_version(f, path, int(path.stem))
    with path.open("ab") as f:
        f.write(fmt.seal(version or 0, next_first))
        f.flush()
        os.fsync(f.fileno())


def _first_kept(entry: _Log, seq: int) -> int:
    """The first sequence of the oldest segment a snapshot at `seq` keeps."""
    for index, (first, _path) in enumerate(entry.segments):
        if index == len(entry.segments) - 1 or entry.segments[index + 1][0] - 1 > seq:
            return first
    return seq + 1


def _trim(entry: _Log, seq: int) -> None:
    """Delete the oldest segments while every event in them is at or below `seq`.

    The newest segment stays, even when covered: the snapshot names it, so that its
    loss is noticed. Recovery calls this again, which completes an interrupted trim.
    """
    while len(entry.segments) > 1 and entry.segments[1][0] - 1 <= seq:
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
            version = fmt.segment_version(f, path, first)
            start = fmt.SEGMENT.size if version else 0
            expected = first
            try:
                for record in fmt.records(f, path, version or 0, start, end):
                    if record.first != expected:
                        raise JournalCorrupted(str(path), record.offset, "sequence gap")
                    expected += record.count
                    if record.count == 0 or expected - 1 <= after_seq:
                        continue
                    events = decode_batch_at(record.batch, str(path), record.offset)
                    if len(events) != record.count:
                        raise JournalCorrupted(
                            str(path), record.offset, f"{len(events)} events, not {record.count}"
                        )
                    skip = max(0, after_seq + 1 - record.first)
                    yield from zip(range(record.first + skip, expected), events[skip:], strict=True)
            except fmt.Damaged as damaged:
                raise JournalCorrupted(str(path), damaged.offset, damaged.reason) from None


def _read_snapshot(path: Path) -> tuple[Snapshot, int | None] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return fmt.parse_snapshot(data, path)


def _fsync_directory(path: Path) -> None:
    """Make a created, renamed or deleted entry in `path` survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
