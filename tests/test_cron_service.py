"""Schedules over HTTP (a real server on loopback), the `actorq cron` commands, and metrics."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from actorq import ActorSystem, VirtualClock
from actorq.service.http import serve
from actorq.service.metrics import PrometheusObserver
from tests.helpers import wait_until
from tests.served import TOKEN, Served, served_system
from tests.test_cli import ROOT, actorq_command

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
NIGHTLY = {"cron": "30 2 * * *", "task": "add", "args": [1, 2], "tz": "Europe/Berlin"}


@pytest.fixture
def served() -> Iterator[Served]:
    with served_system(clock=VirtualClock(start=JAN_1), observer=PrometheusObserver()) as s:
        yield s


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with served.client() as c:
        yield c


def problem(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:actorq:problem:{kind}"


def test_schedule_routes(client: httpx.Client) -> None:
    """PUT creates, GET lists with 5 next fires in the zone, pause/resume/trigger/delete act."""
    created = client.put("/schedules/nightly", json=NIGHTLY)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["next_fires"] == [f"2026-01-0{d}T02:30:00+01:00" for d in range(1, 6)]
    assert (body["catch_up"], body["window"], body["overlap"]) == ("one", 86400.0, "skip")
    assert [s["name"] for s in client.get("/schedules").json()] == ["nightly"]
    assert client.get("/schedules/nightly").json() == body
    paused = client.post("/schedules/nightly/pause").json()
    assert paused["paused"] and paused["next_fires"] == []
    assert not client.post("/schedules/nightly/resume").json()["paused"]
    triggered = client.post("/schedules/nightly/trigger")
    assert triggered.status_code == 201
    job_id = triggered.json()["id"]
    assert triggered.headers["location"] == f"/jobs/{job_id}"
    done = wait_until(lambda: client.get(f"/jobs/{job_id}").json()["status"] == "succeeded")
    assert done and client.get(f"/jobs/{job_id}").json()["result"] == 3
    assert client.get("/schedules/nightly").json()["fired"] == 1
    assert client.delete("/schedules/nightly").json() == {"deleted": True}
    problem(client.get("/schedules/nightly"), 404, "schedule-not-found")
    assert client.get("/schedules").json() == []


@pytest.mark.parametrize(
    ("change", "status", "kind"),
    [
        ({"cron": "61 * * * *"}, 422, "invalid-cron-expression"),
        ({"cron": "@hourly"}, 422, "invalid-cron-expression"),
        ({"tz": "Europe/Atlantis"}, 422, "unknown-time-zone"),
        ({"task": "no_such_task"}, 422, "unknown-task"),
        ({"catch_up": "some"}, 422, "invalid-request"),
        ({"overlap": "queue"}, 422, "invalid-request"),
        ({"window": -5.0}, 422, "invalid-request"),
        ({"args": [1, 2], "extra": True}, 422, "invalid-request"),
    ],
)
def test_bad_schedules_are_refused_and_change_nothing(
    client: httpx.Client, change: dict[str, Any], status: int, kind: str
) -> None:
    """Each bad definition is a problem response; the existing schedule is untouched."""
    assert client.put("/schedules/nightly", json=NIGHTLY).status_code == 200
    before = client.get("/schedules").json()
    problem(client.put("/schedules/nightly", json={**NIGHTLY, **change}), status, kind)
    problem(client.put("/schedules/other", json={**NIGHTLY, **change}), status, kind)
    assert client.get("/schedules").json() == before


def test_unknown_or_malformed_schedule_names(client: httpx.Client) -> None:
    """Commands on an unknown name are 404; a name outside the alphabet is 422."""
    for method, path in [
        ("POST", "/schedules/ghost/pause"),
        ("POST", "/schedules/ghost/resume"),
        ("POST", "/schedules/ghost/trigger"),
        ("DELETE", "/schedules/ghost"),
    ]:
        problem(client.request(method, path), 404, "schedule-not-found")
    problem(client.put("/schedules/bad%20name", json=NIGHTLY), 422, "invalid-schedule")
    assert client.get("/schedules").json() == []


def test_skipped_fires_are_counted_in_the_metrics(served: Served, client: httpx.Client) -> None:
    """An every-minute schedule whose job blocks: the next fire is skipped and counted."""
    clock = served.system.clock
    assert isinstance(clock, VirtualClock)
    minutely = {"cron": "* * * * *", "task": "block"}
    assert client.put("/schedules/minutely", json=minutely).status_code == 200
    for fired in (1, 1):

        def armed() -> bool:
            deadline = clock.next_deadline()
            return deadline is not None and deadline <= clock.now() + 60

        wait_until(armed)
        clock.advance(60)
        wait_until(lambda n=fired: client.get("/schedules/minutely").json()["fired"] == n)  # type: ignore[misc]
    wait_until(lambda: client.get("/schedules/minutely").json()["skipped"] == 1)
    # The metric follows the journal write, which waits for the group commit's linger: a
    # moment of the (virtual) clock.
    clock.advance(1)
    skipped = 'actorq_cron_missed_fires_total{reason="overlap",schedule="minutely"} 1.0'
    wait_until(lambda: skipped in client.get("/metrics").text)
    text = client.get("/metrics").text
    assert 'actorq_cron_fires_total{schedule="minutely"} 1.0' in text
    served.gate.set()


def test_fires_missed_while_down_are_counted(tmp_path: Path) -> None:
    """catch_up="skip" across 4 hours down: 4 missed fires in the metric after the restart."""
    clock = VirtualClock(start=JAN_1)
    journal = str(tmp_path / "journal")

    def build() -> tuple[ActorSystem, PrometheusObserver]:
        observer = PrometheusObserver()
        system = ActorSystem(workers=1, journal=journal, clock=clock, observer=observer)
        system.cron("0 * * * *", name="hourly", catch_up="skip")(system.task("noop")(lambda: None))
        return system, observer

    system, _ = build()
    with system:
        assert system.schedules()[0].fired == 0
    clock.advance(4.5 * 3600)
    system, observer = build()
    with system:
        missed = 'actorq_cron_missed_fires_total{reason="missed",schedule="hourly"} 4.0'
        wait_until(lambda: missed in generate_latest(observer.registry).decode())
        assert system.schedules()[0].missed == 4


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*actorq_command(), *args, "--url", url, "--token", TOKEN],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_cron_commands(served: Served, client: httpx.Client) -> None:
    """`actorq cron list` shows the next 5 fires in the zone; the other commands act."""
    client.put("/schedules/nightly", json=NIGHTLY)
    client.put("/schedules/la", json={**NIGHTLY, "tz": "America/Los_Angeles"})
    listed = run_cli(served.url, "cron", "list")
    assert listed.returncode == 0, listed.stderr
    for day in range(1, 6):
        assert f"2026-01-0{day}T02:30:00+01:00" in listed.stdout
        assert f"2026-01-0{day}T02:30:00-08:00" in listed.stdout
    as_json = json.loads(run_cli(served.url, "cron", "list", "--json").stdout)
    assert [s["name"] for s in as_json] == ["la", "nightly"]
    assert run_cli(served.url, "cron", "pause", "la").stdout.strip() == "la paused"
    assert client.get("/schedules/la").json()["paused"]
    assert run_cli(served.url, "cron", "resume", "la").stdout.strip() == "la active"
    job_id = run_cli(served.url, "cron", "trigger", "nightly").stdout.strip()
    assert job_id.startswith("cron:nightly:manual:")
    assert served.system.result(job_id, timeout=10) == 3
    assert run_cli(served.url, "cron", "delete", "la").returncode == 0
    assert [s["name"] for s in client.get("/schedules").json()] == ["nightly"]
    missing = run_cli(served.url, "cron", "pause", "la")
    assert missing.returncode == 1 and "no schedule named 'la'" in missing.stderr


def test_a_served_worker_has_no_schedules_until_one_is_put() -> None:
    """A fresh system lists none; the route works on a system served without a token."""
    system = ActorSystem(workers=1, journal="memory")
    system.task("noop")(lambda: None)
    with system:
        server = serve(system, "127.0.0.1", 0)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                assert c.get("/schedules").json() == []
                assert c.put("/schedules/n", json={"cron": "0 0 * * *", "task": "noop"}).is_success
                assert [s["tz"] for s in c.get("/schedules").json()] == ["UTC"]
        finally:
            server.stop()
