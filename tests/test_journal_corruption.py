"""The file journal on damaged disks: what a crash leaves is repaired, anything else is named.

Every test writes a real journal with ``fsync="always"`` (so every append that
returned is acknowledged), damages its files, reopens it and compares what comes
back with the acknowledged events: either all of them (a crash-like tail cut
only drops what was never acknowledged), or `JournalCorrupted` naming the
damaged file and offset. Never fewer events without an error.
"""

from __future__ import annotations

import logging
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from actorq.errors import JournalCorrupted
from actorq.persistence import file_format as fmt
from actorq.persistence.codec import encode, event_type
from actorq.persistence.file import FileJournal
from actorq.persistence.journal import Snapshot

FIXTURE = Path(__file__).parent / "fixtures" / "journal_v0"
PID = "notes"


@event_type("test.fixture.note", 1)
@dataclass(frozen=True, slots=True)
class Note:
    text: str
    n: int


def notes(first: int, last: int) -> list[Note]:
    return [Note(f"n{k}", k) for k in range(first, last + 1)]


@dataclass
class Written:
    """A journal on disk and what it acknowledged."""

    root: Path
    batches: list[list[Note]]

    @property
    def acked(self) -> list[Note]:
        return [note for batch in self.batches for note in batch]

    def segments(self) -> list[Path]:
        return sorted((self.root / PID).glob("*.seg"))

    def batches_in(self, segment: Path, count: int) -> list[Note]:
        """The events of the first `count` batches stored in `segment`."""
        first = int(segment.stem)
        kept = [batch for batch in self.batches if batch[0].n >= first][:count]
        return [note for batch in kept for note in batch]

    def copy(self, to: Path) -> Written:
        shutil.copytree(self.root, to)
        return Written(to, self.batches)


def write(root: Path, batch_sizes: list[int], *, segment_bytes: int = 1 << 20) -> Written:
    journal = FileJournal(root, fsync="always", segment_bytes=segment_bytes)
    batches, seq = [], 0
    try:
        for size in batch_sizes:
            batch = notes(seq + 1, seq + size)
            journal.append(PID, batch, after_seq=seq)
            batches.append(batch)
            seq += size
    finally:
        journal.close()
    return Written(root, batches)


def reopen(root: Path, pid: str = PID) -> list[Note] | JournalCorrupted:
    """The events a fresh journal replays, or the corruption it reports on first use."""
    journal = FileJournal(root)
    try:
        snapshot = journal.load_snapshot(pid)
        events = list(journal.replay(pid))
        first = snapshot.seq + 1 if snapshot else 1
        assert [seq for seq, _e in events] == list(range(first, journal.last_seq(pid) + 1))
        return [event for _seq, event in events]
    except JournalCorrupted as exc:
        return exc
    finally:
        journal.close()


def corrupted(outcome: list[Note] | JournalCorrupted, where: Path) -> JournalCorrupted:
    assert isinstance(outcome, JournalCorrupted), f"no error, {len(outcome)} events came back"
    assert outcome.where == str(where)
    assert str(where) in str(outcome)
    return outcome


def record_offsets(segment: Path) -> list[int]:
    """Where each record of a version 1 segment starts, and where the last one ends."""
    data = segment.read_bytes()
    offsets, at = [], fmt.SEGMENT.size
    while at < len(data):
        offsets.append(at)
        length = struct.unpack_from("<I", data, at + 4)[0]
        at += fmt.RECORD.size + length + 1
    return [*offsets, at]


def flip(path: Path, at: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= mask
    path.write_bytes(bytes(data))


def snapshot_file(body: bytes) -> bytes:
    head = struct.pack("<4sHHI", b"AQSN", 1, 0, len(body))
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


# -- a damaged length ------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 7, 1 << 20, 0xFFFFFFFF])
def test_a_damaged_length_mid_segment_is_named_and_nothing_is_cut(
    tmp_path: Path, length: int
) -> None:
    """A bad length in the newest segment is not a torn tail: 20 later records stay on disk."""
    written = write(tmp_path / "j", [1] * 40)
    (segment,) = written.segments()
    at = record_offsets(segment)[20]
    before = segment.read_bytes()
    damaged = bytearray(before)
    struct.pack_into("<I", damaged, at + 4, length)
    segment.write_bytes(bytes(damaged))
    error = corrupted(reopen(written.root), segment)
    assert error.offset == at
    assert segment.read_bytes() == bytes(damaged)  # nothing was truncated
    segment.write_bytes(before)
    assert reopen(written.root) == written.acked


def test_a_damaged_length_in_the_last_record_is_named_too(tmp_path: Path) -> None:
    """The last record's header was written whole: a bad length there is damage, not a crash."""
    written = write(tmp_path / "j", [2, 3, 1])
    (segment,) = written.segments()
    at = record_offsets(segment)[-2]
    flip(segment, at + 5, 0x10)
    assert corrupted(reopen(written.root), segment).offset == at


# -- what a crash leaves ---------------------------------------------------------------


def test_a_zero_filled_tail_is_cut_and_every_acknowledged_record_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A power loss after the file grew leaves zeros: recovery cuts them with a warning."""
    written = write(tmp_path / "j", [2, 3, 1])
    (segment,) = written.segments()
    size = segment.stat().st_size
    with segment.open("ab") as f:
        f.write(bytes(4096))
    with caplog.at_level(logging.WARNING, logger="actorq.persistence.file"):
        assert reopen(written.root) == written.acked
    assert "zero-filled" in caplog.text
    assert segment.stat().st_size == size
    journal = FileJournal(written.root)
    journal.append(PID, [Note("after", 7)], after_seq=6)
    journal.close()
    assert reopen(written.root) == [*written.acked, Note("after", 7)]


def test_a_half_written_last_record_is_cut_back_to_the_acknowledged_ones(tmp_path: Path) -> None:
    """A record whose end reads as zeros never completed its write: only it is dropped."""
    written = write(tmp_path / "j", [2, 3, 1])
    (segment,) = written.segments()
    journal = FileJournal(written.root)
    journal.append(PID, notes(7, 9), after_seq=6)  # the append a crash interrupts
    journal.close()
    data = segment.read_bytes()
    segment.write_bytes(data[:-20] + bytes(20))
    assert reopen(written.root) == written.acked


def test_truncation_at_every_offset_keeps_each_record_before_the_cut(tmp_path: Path) -> None:
    """Cut the newest segment anywhere: exactly the records wholly before the cut remain.

    Cut an older segment anywhere: that is reported, or (a cut at its seal) nothing is lost.
    """
    written = write(tmp_path / "j", [2, 1, 3, 1, 2, 2, 1], segment_bytes=220)
    files = written.segments()
    assert len(files) >= 3
    newest = files[-1]
    before_newest = [n for n in written.acked if n.n < int(newest.stem)]
    ends = record_offsets(newest)
    for index, segment in enumerate(files):
        for cut in range(segment.stat().st_size):
            trial = written.copy(tmp_path / f"t{index}-{cut}")
            target = trial.root / PID / segment.name
            target.write_bytes(segment.read_bytes()[:cut])
            outcome = reopen(trial.root)
            if segment != newest:
                if not isinstance(outcome, JournalCorrupted):
                    assert outcome == written.acked, (segment.name, cut)
                elif outcome.where != str(target):  # events missing from its end
                    successor = trial.root / PID / files[index + 1].name
                    assert corrupted(outcome, successor).offset == 0
                    assert segment.name in outcome.reason
            else:
                whole = sum(1 for end in ends[1:] if end <= cut)
                assert outcome == before_newest + written.batches_in(newest, whole), cut
            shutil.rmtree(trial.root)


def test_a_flipped_byte_anywhere_is_named_never_silently_dropped(tmp_path: Path) -> None:
    """Every byte of every file is checked: a flip is reported, or changes nothing read back."""
    written = write(tmp_path / "j", [2, 1, 3, 1, 2], segment_bytes=200)
    journal = FileJournal(written.root, segment_bytes=200)
    journal.save_snapshot(PID, Snapshot(3, {"count": 3}))
    journal.close()
    kept = [n for n in written.acked if n.n > 3]
    files = [*written.segments(), written.root / PID / "snapshot.bin"]
    for index, path in enumerate(files):
        for at in range(path.stat().st_size):
            trial = written.copy(tmp_path / f"t{index}-{at}")
            target = trial.root / PID / path.name
            flip(target, at)
            outcome = reopen(trial.root)
            if isinstance(outcome, JournalCorrupted):
                assert Path(outcome.where).parent == trial.root / PID, (path.name, at)
            else:
                assert outcome == kept, (path.name, at)
            shutil.rmtree(trial.root)


# -- missing files ---------------------------------------------------------------------


def test_a_deleted_newest_segment_is_named_by_the_seal_before_it(tmp_path: Path) -> None:
    """The segment before the newest was sealed with the newest's name: its loss shows."""
    written = write(tmp_path / "j", [1] * 12, segment_bytes=150)
    files = written.segments()
    files[-1].unlink()
    error = corrupted(reopen(written.root), files[-2])
    assert files[-1].name in error.reason


def test_a_missing_middle_segment_is_a_sequence_gap(tmp_path: Path) -> None:
    """The next segment's name no longer follows the last event before the hole."""
    written = write(tmp_path / "j", [1] * 12, segment_bytes=150)
    files = written.segments()
    files[1].unlink()
    corrupted(reopen(written.root), files[2])


def test_a_missing_oldest_segment_without_snapshot_is_reported(tmp_path: Path) -> None:
    """With no snapshot the log must start at event 1."""
    written = write(tmp_path / "j", [1] * 12, segment_bytes=150)
    files = written.segments()
    files[0].unlink()
    error = corrupted(reopen(written.root), files[1])
    assert "missing" in error.reason


def test_a_snapshot_alone_is_reported_not_taken_for_the_whole_log(tmp_path: Path) -> None:
    """The snapshot names the segment holding the events after it: deleting them all shows."""
    written = write(tmp_path / "j", [1] * 12, segment_bytes=150)
    journal = FileJournal(written.root, segment_bytes=150)
    journal.save_snapshot(PID, Snapshot(5, {"count": 5}))
    journal.close()
    kept = written.segments()
    for segment in kept:
        segment.unlink()
    error = corrupted(reopen(written.root), kept[0])
    assert "snapshot at 5" in error.reason


def test_a_snapshot_of_everything_still_guards_the_next_segment(tmp_path: Path) -> None:
    """After a snapshot of the whole log, the empty segment it names must still be there."""
    written = write(tmp_path / "j", [2, 3])
    journal = FileJournal(written.root)
    journal.save_snapshot(PID, Snapshot(5, {"count": 5}))
    journal.append(PID, notes(6, 7), after_seq=5)
    journal.close()
    assert reopen(written.root) == notes(6, 7)
    (segment,) = written.segments()
    segment.unlink()
    corrupted(reopen(written.root), segment)


def test_a_snapshot_from_the_future_is_reported(tmp_path: Path) -> None:
    """A snapshot newer than the log (restored from elsewhere) is named, not trusted."""
    old = write(tmp_path / "old", [2, 3])
    new = old.copy(tmp_path / "new")
    journal = FileJournal(new.root)
    journal.append(PID, notes(6, 9), after_seq=5)
    journal.save_snapshot(PID, Snapshot(9, {"count": 9}))
    journal.close()
    shutil.copy(new.root / PID / "snapshot.bin", old.root / PID / "snapshot.bin")
    outcome = reopen(old.root)
    assert isinstance(outcome, JournalCorrupted)
    assert Path(outcome.where).parent == old.root / PID


def test_an_unversioned_snapshot_from_the_future_is_reported(tmp_path: Path) -> None:
    """The old snapshot format names no segment; the sequence alone still gives it away."""
    written = write(tmp_path / "j", [2, 3])
    payload = encode({"seq": 9, "state": {"count": 9}})
    snapshot = written.root / PID / "snapshot.bin"
    snapshot.write_bytes(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    assert "from the future" in corrupted(reopen(written.root), snapshot).reason


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # not msgpack
        encode([1, 2]),
        encode({"seq": 1}),
        encode({"seq": "1", "segment": 1, "state": {}}),
        encode({"seq": -1, "segment": 1, "state": {}}),
        encode({"seq": 1, "state": {}}),  # no segment in the versioned format
        encode({"seq": 1, "segment": 0, "state": {}}),
    ],
    ids=["garbage", "list", "no-state", "text-seq", "negative-seq", "no-segment", "bad-segment"],
)
def test_a_bad_snapshot_body_is_corruption_naming_the_file(tmp_path: Path, body: bytes) -> None:
    """A checksum-valid snapshot of the wrong shape is `JournalCorrupted`, never a KeyError."""
    written = write(tmp_path / "j", [2])
    snapshot = written.root / PID / "snapshot.bin"
    snapshot.write_bytes(snapshot_file(body))
    corrupted(reopen(written.root), snapshot)


def test_corruption_is_raised_by_the_first_call_on_the_log(tmp_path: Path) -> None:
    """Recovery runs on first use, so `last_seq` alone surfaces the damage."""
    written = write(tmp_path / "j", [1] * 12, segment_bytes=150)
    written.segments()[-1].unlink()
    journal = FileJournal(written.root)
    try:
        with pytest.raises(JournalCorrupted):
            journal.last_seq(PID)
    finally:
        journal.close()


# -- the unversioned format ------------------------------------------------------------


@pytest.fixture
def v0(tmp_path: Path) -> Path:
    root = tmp_path / "v0"
    shutil.copytree(FIXTURE, root)
    return root


def test_a_journal_in_the_unversioned_format_recovers(v0: Path) -> None:
    """A journal written before the format had a version reads back whole."""
    journal = FileJournal(v0)
    try:
        assert journal.load_snapshot(PID) == Snapshot(11, {"count": 11})
        assert journal.last_seq(PID) == 24
        assert [e for _s, e in journal.replay(PID)] == notes(12, 24)
        assert [e for _s, e in journal.replay("plain")] == [
            Note("p1", 1),
            Note("p2", 2),
            Note("p3", 3),
        ]
    finally:
        journal.close()


def test_appends_to_an_unversioned_journal_continue_in_the_new_format(v0: Path) -> None:
    """New events go to a new segment, the old one is sealed, and losing the new one shows."""
    journal = FileJournal(v0)
    journal.append(PID, notes(25, 26), after_seq=24)
    journal.close()
    assert reopen(v0) == notes(12, 26)
    newest = sorted((v0 / PID).glob("*.seg"))[-1]
    assert newest.name == f"{25:020d}.seg"
    journal = FileJournal(v0)
    journal.save_snapshot(PID, Snapshot(20, {"count": 20}))
    journal.close()
    assert reopen(v0) == notes(21, 26)
    newest.unlink()
    corrupted(reopen(v0), sorted((v0 / PID).glob("*.seg"))[-1])


def test_a_flipped_byte_in_an_unversioned_segment_is_still_named(v0: Path) -> None:
    """The old format's checksums are still checked."""
    segment = v0 / PID / f"{15:020d}.seg"
    flip(segment, 20)
    corrupted(reopen(v0), segment)
