"""The file backend's own promises: torn tails are cut, other damage is reported.

Segment layout and record framing are the file format (see
`actorq.persistence.file`); these tests damage real files byte by byte.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from actorq.errors import JournalCorrupted, JournalFenced, JournalUnavailable, UnknownEventVersion
from actorq.persistence import file_format as fmt
from actorq.persistence.codec import encode, event_type
from actorq.persistence.file import FileJournal
from actorq.persistence.journal import Snapshot


@event_type("test.file.note", 1)
@dataclass(frozen=True, slots=True)
class Note:
    text: str
    n: int


PID = "notes"
REPO = Path(__file__).resolve().parents[1]
BATCHES = [[Note("a", 1), Note("b", 2)], [Note("c", 3)], [Note("d", 4), Note("e", 5), Note("f", 6)]]

notes = st.builds(Note, st.text(max_size=6), st.integers(-3, 3))
batch_lists = st.lists(st.lists(notes, min_size=1, max_size=4), min_size=1, max_size=6)
damage_settings = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def frame(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def write(root: Path, batches: list[list[Note]], **options: Any) -> list[int]:
    """Append `batches` in a fresh journal; return the segment size after each append."""
    sizes = []
    journal = FileJournal(root, fsync="never", **options)
    try:
        seq = 0
        for batch in batches:
            journal.append(PID, batch, after_seq=seq)
            seq += len(batch)
            sizes.append(segments(root)[-1].stat().st_size)
    finally:
        journal.close()
    return sizes


def segments(root: Path) -> list[Path]:
    return sorted((root / PID).glob("*.seg"))


def read(root: Path) -> list[Note]:
    journal = FileJournal(root)
    try:
        pairs = list(journal.replay(PID))
        last = journal.last_seq(PID)
        assert [seq for seq, _e in pairs] == list(range(last - len(pairs) + 1, last + 1))
        return [event for _seq, event in pairs]
    finally:
        journal.close()


def prefixes(batches: list[list[Note]]) -> list[list[Note]]:
    return [[e for batch in batches[:k] for e in batch] for k in range(len(batches) + 1)]


def flatten(batches: list[list[Note]]) -> list[Note]:
    return prefixes(batches)[-1]


@pytest.mark.parametrize(
    ("damage", "kept"),
    [
        (lambda data: data + fmt.record(7, 1, b"x" * 10)[:20], 3),  # header cut short
        (lambda data: data + fmt.record(7, 1, b"x" * 100)[:60], 3),  # body cut short
        (lambda data: data[:-1] + b"\x00", 2),  # the final record's end never written
        (lambda data: data + bytes(300), 3),  # the file grew, its new bytes never written
        (lambda data: data[:-40] + bytes(40), 2),  # the final record half written
    ],
    ids=["short-header", "body-cut-short", "end-never-written", "zero-filled", "half-zeroed"],
)
def test_a_torn_tail_is_cut_with_a_warning_and_appends_continue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Any, kept: int
) -> None:
    """An incomplete last record is what a crash mid-append leaves; recovery drops it."""
    write(tmp_path, BATCHES)
    tail = segments(tmp_path)[-1]
    tail.write_bytes(damage(tail.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="actorq.persistence.file"):
        journal = FileJournal(tmp_path)
        assert [e for _s, e in journal.replay(PID)] == flatten(BATCHES[:kept])
    assert "torn tail" in caplog.text
    assert str(tail) in caplog.text
    last = journal.last_seq(PID)
    journal.append(PID, [Note("after", 7)], after_seq=last)
    journal.close()
    caplog.clear()
    assert read(tmp_path) == [*flatten(BATCHES[:kept]), Note("after", 7)]
    assert "torn tail" not in caplog.text


def test_a_flipped_byte_mid_segment_names_the_file_and_the_record_offset(tmp_path: Path) -> None:
    """Damage followed by more records cannot be a torn write: it is reported, not skipped."""
    sizes = write(tmp_path, BATCHES)
    segment = segments(tmp_path)[0]
    data = bytearray(segment.read_bytes())
    data[sizes[0] + 12] ^= 0x01  # inside the second record's payload
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupted) as raised:
        read(tmp_path)
    assert raised.value.where == str(segment)
    assert raised.value.offset == sizes[0]
    assert str(segment) in str(raised.value)


def test_damage_at_the_end_of_an_older_segment_is_corruption(tmp_path: Path) -> None:
    """Only the newest segment can have a torn tail: older ones were complete."""
    write(tmp_path, BATCHES, segment_bytes=1)
    older = segments(tmp_path)[1]
    older.write_bytes(older.read_bytes()[:-1])
    with pytest.raises(JournalCorrupted) as raised:
        read(tmp_path)
    assert raised.value.where == str(older)


def test_a_damaged_snapshot_is_corruption_not_a_missing_snapshot(tmp_path: Path) -> None:
    """A snapshot is replaced by rename, never torn: any damage to it is reported."""
    write(tmp_path, BATCHES)
    journal = FileJournal(tmp_path)
    journal.save_snapshot(PID, Snapshot(3, {"n": 3}))
    journal.close()
    snapshot = tmp_path / PID / "snapshot.bin"
    data = snapshot.read_bytes()
    snapshot.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(JournalCorrupted) as raised:
        read(tmp_path)
    assert raised.value.where == str(snapshot)


def test_a_missing_segment_is_a_sequence_gap(tmp_path: Path) -> None:
    """Deleting a middle segment leaves a hole that recovery reports."""
    write(tmp_path, BATCHES, segment_bytes=1)
    files = segments(tmp_path)
    files[1].unlink()
    with pytest.raises(JournalCorrupted, match="starts at 4, not 3") as raised:
        read(tmp_path)
    assert raised.value.where == str(files[2])


def test_a_record_with_a_valid_checksum_but_garbage_inside_is_corruption(tmp_path: Path) -> None:
    """A checksum-valid record was written whole: undecodable means corrupt, even at the end."""
    write(tmp_path, BATCHES[:1])
    segment = segments(tmp_path)[0]
    size = segment.stat().st_size
    segment.write_bytes(segment.read_bytes() + fmt.record(3, 1, b"\xc1\xc1"))
    with pytest.raises(JournalCorrupted) as raised:
        read(tmp_path)
    assert (raised.value.where, raised.value.offset) == (str(segment), size)


def test_an_event_of_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    """Reading an event written by a newer actorq raises instead of guessing its fields."""
    (tmp_path / PID).mkdir()
    batch = encode([{"t": "test.file.note", "v": 2, "text": "new", "n": 1}])
    (tmp_path / PID / f"{1:020d}.seg").write_bytes(frame(encode([1, 1, batch])))
    with pytest.raises(UnknownEventVersion) as raised:
        read(tmp_path)
    assert (raised.value.event_type, raised.value.version) == ("test.file.note", 2)


def test_segments_roll_over_and_a_snapshot_deletes_the_covered_ones(tmp_path: Path) -> None:
    """Segment names carry their first sequence; a snapshot removes wholly covered files."""
    batches = [[Note(str(i), i)] * 3 for i in range(10)]
    write(tmp_path, batches, segment_bytes=200)
    names = [int(p.stem) for p in segments(tmp_path)]
    assert len(names) > 2
    assert names == sorted(names)
    assert names[0] == 1
    journal = FileJournal(tmp_path, segment_bytes=200)
    journal.save_snapshot(PID, Snapshot(names[2] - 1, "state"))
    assert [int(p.stem) for p in segments(tmp_path)] == names[2:]
    assert [s for s, _e in journal.replay(PID)] == list(range(names[2], 31))
    journal.close()
    assert [e for b in batches for e in b][names[2] - 1 :] == read(tmp_path)


@pytest.mark.parametrize("fsync", ["always", "batch", "never"])
def test_every_fsync_mode_keeps_appends_across_a_reopen(tmp_path: Path, fsync: Any) -> None:
    """The fsync mode changes when data reaches the disk, not what is read back."""
    journal = FileJournal(tmp_path, fsync=fsync)
    for seq, batch in zip((0, 2, 3), BATCHES, strict=True):
        journal.append(PID, batch, after_seq=seq)
    journal.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("actorq-fsync")]
    assert read(tmp_path) == flatten(BATCHES)


def test_a_second_process_on_the_directory_is_fenced(tmp_path: Path) -> None:
    """The directory lock keeps a second writer process out until the first closes."""
    script = (
        "import sys\n"
        "from actorq.errors import JournalFenced\n"
        "from actorq.persistence.file import FileJournal\n"
        "try:\n"
        "    FileJournal(sys.argv[1]).close()\n"
        "except JournalFenced as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    command = [sys.executable, "-c", script, str(tmp_path)]
    journal = FileJournal(tmp_path)
    refused = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert refused.returncode == 3, refused.stderr
    assert str(tmp_path) in refused.stdout
    assert str(os.getpid()) in refused.stdout
    with pytest.raises(JournalFenced):
        FileJournal(tmp_path)
    journal.close()
    accepted = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_persistence_ids_get_distinct_directories_inside_the_root(tmp_path: Path) -> None:
    """Ids with slashes, dots, the lock file's name or 300 characters stay apart and inside."""
    ids = ["a/b", "a%2Fb", "..", ".", ".hidden", "LOCK", "ü", "x" * 300, "x" * 301]
    journal = FileJournal(tmp_path)
    for n, pid in enumerate(ids):
        journal.append(pid, [Note(pid, n)], after_seq=0)
    journal.close()
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == len(ids)
    journal = FileJournal(tmp_path)
    assert [list(journal.replay(pid)) for pid in ids] == [
        [(1, Note(pid, n))] for n, pid in enumerate(ids)
    ]
    journal.close()


def test_a_closed_journal_and_an_out_of_range_snapshot_are_refused(tmp_path: Path) -> None:
    """A snapshot past the log's end is a caller bug; a closed journal does nothing."""
    journal = FileJournal(tmp_path)
    journal.append(PID, BATCHES[0], after_seq=0)
    with pytest.raises(ValueError, match="past the log's end"):
        journal.save_snapshot(PID, Snapshot(3, "state"))
    journal.close()
    with pytest.raises(JournalUnavailable, match="closed"):
        journal.append(PID, BATCHES[1], after_seq=2)


def damaged_outcome(root: Path) -> list[Note] | JournalCorrupted:
    try:
        events = read(root)
    except JournalCorrupted as exc:
        event("reported as corrupt")
        corrupted = exc
    else:
        event("cut back to a batch boundary")
        return events
    assert Path(corrupted.where).parent == root / PID
    return corrupted


@damage_settings
@given(batches=batch_lists, segment_bytes=st.sampled_from([1, 90, 1 << 20]), data=st.data())
def test_a_truncation_anywhere_is_cut_back_to_a_batch_or_reported(
    batches: list[list[Note]], segment_bytes: int, data: st.DataObject
) -> None:
    """Cutting the newest segment loses whole trailing batches only; any other cut is reported."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, batches, segment_bytes=segment_bytes)
        files = segments(root)
        index = data.draw(st.integers(0, len(files) - 1), label="segment")
        cut = data.draw(st.integers(0, files[index].stat().st_size - 1), label="cut")
        # A crash while a segment is being closed can tear its seal with the
        # next segment created and still empty: that one is a tail too.
        tail = index == len(files) - 1 or (
            index == len(files) - 2 and files[-1].stat().st_size <= fmt.SEGMENT.size
        )
        os.truncate(files[index], cut)
        outcome = damaged_outcome(root)
        if not tail:
            assert isinstance(outcome, JournalCorrupted)
            return
        assert not isinstance(outcome, JournalCorrupted)
        assert outcome in prefixes(batches)[:-1]
        journal = FileJournal(root, segment_bytes=segment_bytes)
        journal.append(PID, [Note("next", 0)], after_seq=len(outcome))
        journal.close()
        assert read(root) == [*outcome, Note("next", 0)]


@damage_settings
@given(batches=batch_lists, segment_bytes=st.sampled_from([1, 90, 1 << 20]), data=st.data())
def test_a_flipped_byte_is_reported_or_confined_to_a_cut_tail(
    batches: list[list[Note]], segment_bytes: int, data: st.DataObject
) -> None:
    """No flipped byte ever comes back as different events."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, batches, segment_bytes=segment_bytes)
        files = segments(root)
        index = data.draw(st.integers(0, len(files) - 1), label="segment")
        content = bytearray(files[index].read_bytes())
        at = data.draw(st.integers(0, len(content) - 1), label="offset")
        content[at] ^= data.draw(st.integers(1, 255), label="mask")
        files[index].write_bytes(bytes(content))
        outcome = damaged_outcome(root)
        if index < len(files) - 1:
            assert isinstance(outcome, JournalCorrupted)
        elif not isinstance(outcome, JournalCorrupted):
            assert outcome in prefixes(batches)[:-1]
