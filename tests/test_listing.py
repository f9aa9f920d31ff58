"""Listing that scales: GET /jobs with filters and pages, /dlq in pages, and their CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from actorq import ActorSystem, InvalidSubmission, JobStatus
from actorq.actors.deadletter import Buried
from actorq.core.job import JobInfo, JobSpec, pack
from actorq.persistence.file import FileJournal
from actorq.service.http import serve

DEAD = 20_000


def dead_info(n: int, payload: bytes | None = None) -> JobInfo:
    spec = JobSpec(
        id=f"dead-{n:06d}", task="gone", payload=payload or pack([[n], {}]), queue="default"
    )
    return JobInfo(
        spec=spec,
        status=JobStatus.DEAD,
        attempts=1,
        result=None,
        error=f"failure {n}",
        created_at=1.0,
        run_at=None,
        started_at=1.0,
        finished_at=2.0 + n,
    )


def served(system: ActorSystem) -> Iterator[httpx.Client]:
    system.start()
    server = serve(system, "127.0.0.1", 0, None)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()
        system.stop(timeout=5)


@pytest.fixture
def many_dead(tmp_path: Path) -> Iterator[httpx.Client]:
    """A system whose journal holds 20,000 dead letters and one that cannot be decoded."""
    root = tmp_path / "journal"
    journal = FileJournal(root)
    infos = [dead_info(n) for n in range(DEAD)]
    infos.insert(DEAD // 2, dead_info(DEAD, payload=b"\xc1not msgpack"))
    for start in range(0, len(infos), 2000):
        batch = [Buried(info) for info in infos[start : start + 2000]]
        journal.append("deadletter", batch, after_seq=start)
    journal.close()
    yield from served(ActorSystem(workers=1, journal=str(root)))


def test_paging_over_20000_dead_letters_adds_up(many_dead: httpx.Client) -> None:
    seen: list[str] = []
    pages = 0
    url: str | None = "/dlq?limit=1000"
    while url is not None:
        response = many_dead.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= 1000
        seen += [job["id"] for job in page]
        pages += 1
        url = response.links.get("next", {}).get("url")
    assert len(seen) == len(set(seen)) == DEAD + 1
    assert pages == 21  # 20 full pages, and a last that says there is no more
    unreadable = many_dead.get("/dlq", params={"after": f"dead-{DEAD // 2 - 1:06d}", "limit": 1})
    (shown,) = unreadable.json()
    assert shown["id"] == f"dead-{DEAD:06d}" and shown["args"] == []
    assert shown["error"] == f"failure {DEAD}"


def test_the_default_page_is_bounded(many_dead: httpx.Client) -> None:
    response = many_dead.get("/dlq")
    assert len(response.json()) == 100
    assert response.links["next"]["url"].endswith(f"after=dead-{99:06d}")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "status=bogus"])
def test_bad_paging_answers_422(many_dead: httpx.Client, query: str) -> None:
    path = "/jobs" if query.startswith("status") else "/dlq"
    assert many_dead.get(f"{path}?{query}").status_code == 422


@pytest.fixture
def mixed() -> Iterator[tuple[ActorSystem, httpx.Client]]:
    system = ActorSystem(workers=1, journal="memory", queues=("default", "bulk"))

    @system.task("add")
    def add(a: int, b: int) -> int:
        return a + b

    @system.task("stamp")
    def stamp() -> Any:
        return {"at": msgpack.Timestamp(1_700_000_000, 5), (1, 2): "tuple key", 3: "int key"}

    for client in served(system):
        yield system, client


def test_jobs_are_listed_in_pages_with_filters(mixed: tuple[ActorSystem, httpx.Client]) -> None:
    system, client = mixed
    adds = [system.submit("add", i, 1) for i in range(25)]
    bulk = [system.submit("add", i, 2, queue="bulk") for i in range(5)]
    later = system.submit("add", 0, 0, delay=3600)
    for handle in [*adds, *bulk]:
        handle.result(timeout=10)
    ids: list[str] = []
    after = None
    while True:
        page = system.jobs(limit=7, after=after)
        ids += [job.id for job in page]
        if len(page) < 7:
            break
        after = page[-1].id
    assert ids == [h.id for h in [*adds, *bulk, later]]
    assert [j.id for j in system.jobs(queue="bulk")] == [h.id for h in bulk]
    assert [j.id for j in system.jobs(status="scheduled")] == [later.id]
    assert system.jobs(task="nope") == []
    with pytest.raises(InvalidSubmission):
        system.jobs(limit=0)
    over_http = client.get("/jobs", params={"queue": "bulk", "limit": 3})
    assert [j["id"] for j in over_http.json()] == [h.id for h in bulk[:3]]
    rest = client.get(over_http.links["next"]["url"]).json()
    assert [j["id"] for j in rest] == [h.id for h in bulk[3:]]
    assert client.get("/jobs", params={"status": "scheduled"}).json()[0]["id"] == later.id


def test_results_json_cannot_hold_are_shown(mixed: tuple[ActorSystem, httpx.Client]) -> None:
    """A msgpack timestamp and non-text map keys: shown, never a 500."""
    system, client = mixed
    handle = system.submit("stamp")
    result = handle.result(timeout=10)
    assert result[(1, 2)] == "tuple key" and result[3] == "int key"
    shown = client.get(f"/jobs/{handle.id}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["result"] == {
        "at": "2023-11-14T22:13:20+00:00",
        "[1, 2]": "tuple key",
        "3": "int key",
    }
    (listed,) = client.get("/jobs", params={"task": "stamp"}).json()
    assert listed["result"] == shown.json()["result"]
