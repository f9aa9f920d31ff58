"""The journal protocol and the in-memory backend.

A journal stores, per persistence id, an ordered log of events in batches
(one batch per group commit) and the latest snapshot. Every backend
(memory, file, Redis) implements `Journal` and passes the same contract
suite in ``tests/test_journal_contract.py``.

Sequence numbers count events, starting at 1. `append` is optimistic:
the caller states the last sequence it knows (`after_seq`), and a backend
whose log ends elsewhere raises `SequenceConflict` instead of writing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actorq import faults
from actorq.errors import SequenceConflict
from actorq.persistence.url import parse_journal_url


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A persistent actor's state as of event `seq` (msgpack-able data)."""

    seq: int
    state: Any


class Journal(Protocol):
    """Event log plus snapshot store for any number of persistence ids."""

    def append(self, persistence_id: str, events: Sequence[Any], *, after_seq: int) -> None:
        """Durably store `events` as sequence numbers after_seq+1, after_seq+2, ...

        Returns only once the batch is as durable as the backend promises.
        Raises `SequenceConflict` if the log does not end at `after_seq`.
        """

    def replay(self, persistence_id: str, *, after_seq: int = 0) -> Iterator[tuple[int, Any]]:
        """Yield ``(seq, event)`` for every stored event numbered above `after_seq`."""

    def last_seq(self, persistence_id: str) -> int:
        """The highest stored sequence number (0 for an empty log)."""

    def save_snapshot(self, persistence_id: str, snapshot: Snapshot) -> None:
        """Store `snapshot` and drop events up to its sequence number, as one step."""

    def load_snapshot(self, persistence_id: str) -> Snapshot | None:
        """The latest snapshot, or None."""

    def close(self) -> None:
        """Release files, connections and ownership."""


class MemoryJournal:
    """Keeps events as Python objects in lists: fast, and gone with the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, list[tuple[int, Sequence[Any]]]] = {}  # (first seq, batch)
        self._last: dict[str, int] = {}
        self._snapshots: dict[str, Snapshot] = {}

    def append(self, persistence_id: str, events: Sequence[Any], *, after_seq: int) -> None:
        faults.point("journal.append", persistence_id)
        with self._lock:
            last = self._last.get(persistence_id, 0)
            if last != after_seq:
                raise SequenceConflict(persistence_id, after_seq, last)
            self._logs.setdefault(persistence_id, []).append((after_seq + 1, events))
            self._last[persistence_id] = after_seq + len(events)

    def replay(self, persistence_id: str, *, after_seq: int = 0) -> Iterator[tuple[int, Any]]:
        faults.point("journal.read", persistence_id)
        with self._lock:
            log = list(self._logs.get(persistence_id, ()))
        for first, batch in log:
            for seq, event in enumerate(batch, start=first):
                if seq > after_seq:
                    yield seq, event

    def last_seq(self, persistence_id: str) -> int:
        with self._lock:
            return self._last.get(persistence_id, 0)

    def save_snapshot(self, persistence_id: str, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshots[persistence_id] = snapshot
            log = self._logs.get(persistence_id, [])
            kept = []
            for first, batch in log:
                if first + len(batch) - 1 > snapshot.seq:
                    kept.append((first, batch[max(0, snapshot.seq + 1 - first) :]))
            self._logs[persistence_id] = [
                (max(first, snapshot.seq + 1), batch) for first, batch in kept
            ]

    def load_snapshot(self, persistence_id: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(persistence_id)

    def close(self) -> None:
        """Nothing to release."""


def open_journal(spec: str | Journal | None) -> Journal:
    """Resolve a journal argument: an instance, "memory", a path, or a URL.

    - ``memory``: `MemoryJournal`;
    - a directory path or ``file:///dir[?fsync=always|batch|never]``: `FileJournal`;
    - ``redis://[:password@]host:port/db[?namespace=N&lease=S&claim_wait=S]``
      (also ``rediss://``, ``unix://``): `RedisJournal`.

    Anything else raises `InvalidJournalURL` before a file or connection is opened.
    """
    if spec is None:
        return MemoryJournal()
    if not isinstance(spec, str):
        return spec
    url = parse_journal_url(spec)
    if url.kind == "memory":
        return MemoryJournal()
    if url.kind == "redis":
        from actorq.persistence.redis import RedisJournal

        return RedisJournal.from_url(spec)
    from actorq.persistence.file import FileJournal

    return FileJournal(url.path, fsync=url.fsync)
