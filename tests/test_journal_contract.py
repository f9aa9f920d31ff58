"""The journal contract: memory, file and Redis backends behave the same.

A backend trims at its own granularity: memory drops single events, Redis one
stream entry (one batch) at a time, files one segment at a time. The file
backend runs here with one batch per segment, so that every backend drops
exactly the batches a snapshot covers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actorq.errors import SequenceConflict
from actorq.persistence.codec import event_type
from actorq.persistence.file import FileJournal
from actorq.persistence.journal import Journal, MemoryJournal, Snapshot
from actorq.persistence.redis import RedisJournal


@event_type("test.x", 1)
@dataclass(frozen=True, slots=True)
class Deposited:
    account: str
    amount: int


@event_type("test.y", 1)
@dataclass(frozen=True, slots=True)
class Closed:
    account: str
    reason: str | None = None


PID = "dispatcher"
BATCHES: list[list[Any]] = [
    [Deposited("a", 10), Deposited("b", 5), Closed("b", "moved")],
    [Deposited("a", 1), Deposited("c", 2), Deposited("a", -3)],
    [Closed("a"), Deposited("c", 7), Closed("c", None)],
]
EVENTS = [event for batch in BATCHES for event in batch]


class Backend:
    """One storage place; `journal` is open on it and `reopen` replaces it by a new instance."""

    def __init__(self, opener: Callable[[], Journal]) -> None:
        self._opener = opener
        self.journal = opener()

    def reopen(self) -> Journal:
        self.journal.close()
        self.journal = self._opener()
        return self.journal

    def fill(self, batches: list[list[Any]] = BATCHES) -> None:
        seq = self.journal.last_seq(PID)
        for batch in batches:
            self.journal.append(PID, batch, after_seq=seq)
            seq += len(batch)


def _opener(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Journal]:
    if kind == "memory":
        return MemoryJournal
    if kind == "file":
        return lambda: FileJournal(tmp_path / "journal", segment_bytes=1)
    url: str = request.getfixturevalue("redis_url")
    return lambda: RedisJournal.from_url(url)


@pytest.fixture(params=["memory", "file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(_opener(request.param, request, tmp_path))
    yield opened
    opened.journal.close()


@pytest.fixture(params=["file", "redis"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(_opener(request.param, request, tmp_path))
    yield opened
    opened.journal.close()


def numbered(first: int = 1, last: int = len(EVENTS)) -> list[tuple[int, Any]]:
    return [(seq, EVENTS[seq - 1]) for seq in range(first, last + 1)]


def test_an_empty_log_has_no_events_no_snapshot_and_last_seq_zero(backend: Backend) -> None:
    """A persistence id never written to reads as empty."""
    assert backend.journal.last_seq(PID) == 0
    assert list(backend.journal.replay(PID)) == []
    assert list(backend.journal.replay(PID, after_seq=5)) == []
    assert backend.journal.load_snapshot(PID) is None


def test_replay_yields_every_event_in_order_numbered_from_one(backend: Backend) -> None:
    """Batches come back flattened, in append order, with consecutive sequence numbers."""
    backend.fill()
    assert list(backend.journal.replay(PID)) == numbered()
    assert backend.journal.last_seq(PID) == len(EVENTS)


@pytest.mark.parametrize("after", [1, 3, 5, 9, 20])
def test_replay_after_a_sequence_starts_right_after_it(backend: Backend, after: int) -> None:
    """`after_seq` may fall inside a batch; replay starts at the next event."""
    backend.fill()
    assert list(backend.journal.replay(PID, after_seq=after)) == numbered(after + 1)


def test_persistence_ids_do_not_see_each_others_events(backend: Backend) -> None:
    """Two ids in one journal keep separate logs and sequence numbers."""
    backend.fill()
    backend.journal.append("other", [Closed("z")], after_seq=0)
    assert list(backend.journal.replay("other")) == [(1, Closed("z"))]
    assert backend.journal.last_seq("other") == 1
    assert list(backend.journal.replay(PID)) == numbered()


@pytest.mark.parametrize("stale", [0, 3, 8, 10])
def test_an_append_after_the_wrong_sequence_conflicts_and_writes_nothing(
    backend: Backend, stale: int
) -> None:
    """The log must end exactly at `after_seq`; otherwise nothing is written."""
    backend.fill()
    with pytest.raises(SequenceConflict) as raised:
        backend.journal.append(PID, [Deposited("x", 1)], after_seq=stale)
    assert (raised.value.expected, raised.value.actual) == (stale, len(EVENTS))
    assert list(backend.journal.replay(PID)) == numbered()
    assert backend.journal.last_seq(PID) == len(EVENTS)


def test_an_empty_append_only_checks_the_sequence(backend: Backend) -> None:
    """Appending no events changes nothing but still refuses a wrong `after_seq`."""
    backend.fill(BATCHES[:1])
    backend.journal.append(PID, [], after_seq=3)
    with pytest.raises(SequenceConflict):
        backend.journal.append(PID, [], after_seq=2)
    assert backend.journal.last_seq(PID) == 3


def test_a_snapshot_loads_back_as_saved(backend: Backend) -> None:
    """Snapshot state is any msgpack data and comes back equal; the newest one wins."""
    backend.fill()
    backend.journal.save_snapshot(PID, Snapshot(3, {"balances": {"a": 10}, "closed": ["b"]}))
    state = {"balances": {"a": 8, "c": 2}, "closed": ["b"], "blob": b"\x00\xff"}
    backend.journal.save_snapshot(PID, Snapshot(6, state))
    assert backend.journal.load_snapshot(PID) == Snapshot(6, state)


def test_a_snapshot_drops_the_batches_it_covers(backend: Backend) -> None:
    """Events up to the snapshot are trimmed; every later event stays."""
    backend.fill()
    backend.journal.save_snapshot(PID, Snapshot(6, "state"))
    assert list(backend.journal.replay(PID)) == numbered(7)
    assert list(backend.journal.replay(PID, after_seq=6)) == numbered(7)
    assert backend.journal.last_seq(PID) == len(EVENTS)


def test_a_snapshot_inside_a_batch_keeps_every_later_event(backend: Backend) -> None:
    """A batch straddling the snapshot may stay whole, but nothing after it is lost."""
    backend.fill()
    backend.journal.save_snapshot(PID, Snapshot(5, "state"))
    kept = list(backend.journal.replay(PID))
    assert kept in (numbered(4), numbered(6))
    assert list(backend.journal.replay(PID, after_seq=5)) == numbered(6)


def test_appends_continue_after_a_snapshot_of_everything(backend: Backend) -> None:
    """With every event trimmed, the log still knows its last sequence."""
    backend.fill()
    backend.journal.save_snapshot(PID, Snapshot(len(EVENTS), "state"))
    assert backend.journal.last_seq(PID) == len(EVENTS)
    assert list(backend.journal.replay(PID)) == []
    backend.journal.append(PID, [Closed("q")], after_seq=len(EVENTS))
    assert list(backend.journal.replay(PID)) == [(len(EVENTS) + 1, Closed("q"))]


def test_a_reopened_journal_sees_the_same_events_snapshot_and_sequence(durable: Backend) -> None:
    """A new instance on the same directory or namespace reads what the old one wrote."""
    durable.fill()
    durable.journal.save_snapshot(PID, Snapshot(3, {"n": 3}))
    journal = durable.reopen()
    assert list(journal.replay(PID, after_seq=3)) == numbered(4)
    assert journal.last_seq(PID) == len(EVENTS)
    assert journal.load_snapshot(PID) == Snapshot(3, {"n": 3})
    journal.append(PID, [Deposited("d", 4)], after_seq=len(EVENTS))
    assert durable.reopen().last_seq(PID) == len(EVENTS) + 1


def test_a_reopened_journal_keeps_the_sequence_of_a_fully_trimmed_log(durable: Backend) -> None:
    """After a snapshot of everything, the last sequence survives a reopen."""
    durable.fill()
    durable.journal.save_snapshot(PID, Snapshot(len(EVENTS), "all"))
    journal = durable.reopen()
    assert journal.last_seq(PID) == len(EVENTS)
    assert list(journal.replay(PID)) == []
    with pytest.raises(SequenceConflict):
        journal.append(PID, [Closed("late")], after_seq=0)
    journal.append(PID, [Closed("late")], after_seq=len(EVENTS))
