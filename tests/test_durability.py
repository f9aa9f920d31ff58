"""Durability levels, the pipeline, and journals written by the previous event format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from actorq import ActorSystem, InvalidSubmission, JobStatus, VirtualClock

FIXTURES = Path(__file__).parent / "fixtures"


def make(journal: str, clock: VirtualClock | None = None) -> ActorSystem:
    system = ActorSystem(workers=2, journal=journal, clock=clock)

    @system.task("add")
    def add(a: int, b: int) -> int:
        return a + b

    return system


def test_accepted_submissions_become_durable_and_survive_a_restart(tmp_path: Path) -> None:
    """durability="accepted" returns first; handle.durable() waits; the job is then on disk."""
    journal = str(tmp_path / "j")
    system = make(journal)
    with system:
        system.pause()
        handles = [system.submit("add", i, i, durability="accepted") for i in range(50)]
        assert all(h.durable(timeout=5) for h in handles)
    again = make(journal)
    with again:
        assert [again.result(h.id, timeout=10) for h in handles] == [2 * i for i in range(50)]


def test_a_pipeline_waits_on_exit_until_every_submission_is_durable(tmp_path: Path) -> None:
    """Leaving the block means every job in it is in the journal: a restart finds them all."""
    journal = str(tmp_path / "j")
    system = make(journal)
    with system:
        system.pause()
        with system.pipeline() as pipe:
            handles = [pipe.submit("add", i, 1, priority=i % 3) for i in range(200)]
        assert len(pipe.handles) == 200
    again = make(journal)
    with again:
        assert [again.result(h.id, timeout=10) for h in handles] == [i + 1 for i in range(200)]


def test_an_unknown_durability_level_is_refused(tmp_path: Path) -> None:
    """A typo in durability is a clear error, and nothing is submitted."""
    system = make("memory")
    with system:
        with pytest.raises(InvalidSubmission, match="durability"):
            system.submit("add", 1, 2, durability="eventually")  # type: ignore[arg-type]
        assert system.stats()["active"] == 0


@pytest.mark.parametrize("fixture", ["events-v1", "snapshot-v1"])
def test_a_journal_written_by_the_first_event_format_still_recovers(
    tmp_path: Path, fixture: str
) -> None:
    """Version-1 events and snapshots are upgraded on replay: every job comes back as it was."""
    journal = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, journal)
    expected = json.loads((journal / "expected.json").read_text())
    # Read at the time the fixture was recorded (its job ids start with that time
    # in ms): its delayed job is still waiting and its finished jobs are kept.
    recorded = int(next(iter(expected)).split("-")[0][:11], 16) / 1000
    system = make(str(journal), VirtualClock(recorded + 1.0))

    @system.task("boom")
    def boom(x: int) -> None:
        raise ValueError(f"bad {x}")

    with system:
        for job_id, want in expected.items():
            info = system.job(job_id)
            got = {
                "status": info.status.value,
                "args": info.args,
                "result": info.result,
                "task": info.task,
                "attempts": info.attempts,
                "priority": info.priority,
                "idempotency_key": info.idempotency_key,
            }
            assert got == want, job_id
        dead = [i for i in system.dead_letters() if i.status is JobStatus.DEAD]
        assert [d.task for d in dead] == ["boom"]
        # The idempotency key of the old journal still answers with its job.
        first = next(i for i, w in expected.items() if w["idempotency_key"] == "k1")
        assert system.submit("add", 1, 2, idempotency_key="k1").id == first
