"""The HTTP API against a real uvicorn server on a loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from actorq import ActorSystem
from actorq.persistence.journal import MemoryJournal
from actorq.service.http import serve
from tests.helpers import wait_until
from tests.served import TOKEN, Served, served_system

PAYLOAD_LIMIT = 4096  # small, so oversize bodies stay small
BODY_LIMIT = 2 * PAYLOAD_LIMIT + 64 * 1024  # actorq.service.http: twice plus the margin


@pytest.fixture
def served() -> Iterator[Served]:
    with served_system(max_payload_bytes=PAYLOAD_LIMIT) as s:
        yield s


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with served.client() as c:
        yield c


def poll_job(client: httpx.Client, job_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        return job if job["status"] == status else None

    job = wait_until(reached)
    assert job is not None
    return job


def assert_problem(response: httpx.Response, status: int, kind: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert "detail" in body
    if kind is not None:
        assert body["type"] == f"urn:actorq:problem:{kind}"


# -- jobs -----------------------------------------------------------------------------


def test_submit_answers_201_and_the_job_runs_to_success(client: httpx.Client) -> None:
    """POST /jobs answers 201 with the job and its Location; polling shows it succeed."""
    response = client.post("/jobs", json={"task": "add", "args": [2, 3]})
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["task"] == "add"
    assert job["args"] == [2, 3]
    done = poll_job(client, job["id"], "succeeded")
    assert done["result"] == 5
    assert done["attempts"] == 1


def test_an_accepted_submission_answers_202(client: httpx.Client) -> None:
    """durability=accepted answers 202 before the job is durable; it still runs."""
    response = client.post("/jobs", json={"task": "add", "args": [4, 4], "durability": "accepted"})
    assert response.status_code == 202
    assert poll_job(client, response.json()["id"], "succeeded")["result"] == 8
    bad = client.post("/jobs", json={"task": "add", "durability": "someday"})
    assert bad.status_code == 422


def test_submit_accepts_every_option(client: httpx.Client) -> None:
    """kwargs, priority, delay, queue and timeout all reach the job."""
    body = {
        "task": "add",
        "kwargs": {"a": 1, "b": 2},
        "priority": 7,
        "delay": 0.01,
        "queue": "default",
        "timeout": 5,
    }
    job = client.post("/jobs", json=body).json()
    assert job["priority"] == 7
    assert poll_job(client, job["id"], "succeeded")["result"] == 3


def test_a_repeated_idempotency_key_answers_200_with_the_first_job(client: httpx.Client) -> None:
    """The second submission with the same key creates nothing and returns the first job."""
    body = {"task": "add", "args": [1, 1], "idempotency_key": "once"}
    first = client.post("/jobs", json=body)
    second = client.post("/jobs", json=body)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


def test_a_key_reused_with_other_arguments_answers_409(client: httpx.Client) -> None:
    body = {"task": "add", "args": [1, 1], "idempotency_key": "twice"}
    first = client.post("/jobs", json=body)
    conflict = client.post("/jobs", json={**body, "args": [5, 5]})
    assert first.status_code == 201
    assert_problem(conflict, 409, "idempotency-conflict")
    assert first.json()["id"] in conflict.json()["detail"]


def test_a_call_that_cannot_bind_answers_422_and_creates_nothing(client: httpx.Client) -> None:
    response = client.post("/jobs", json={"task": "add", "args": [1]})
    assert_problem(response, 422, "invalid-submission")
    assert client.get("/queues").json()["active"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"task": "add", "args": [1, 2], "delay": 1e999}',
        b'{"task": "add", "args": [1e999, 2]}',
        b'{"task": "add", "args": [1, 2], "timeout": -1e400}',
    ],
)
def test_numbers_only_infinity_could_hold_answer_422(client: httpx.Client, body: bytes) -> None:
    response = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 422, "invalid-request")
    assert client.get("/queues").json()["active"] == 0


def test_a_delay_past_the_bound_answers_422(client: httpx.Client) -> None:
    response = client.post("/jobs", json={"task": "add", "args": [1, 2], "delay": 1e10})
    assert_problem(response, 422, "invalid-submission")


def test_results_json_cannot_carry_are_shown_not_failed(client: httpx.Client) -> None:
    """Bytes come back as base64 text and NaN/Infinity as strings, never as a 500."""
    job_id = client.post("/jobs", json={"task": "odd"}).json()["id"]
    result = poll_job(client, job_id, "succeeded")["result"]
    assert result == {"raw": "AP8=", "nan": "NaN", "inf": "-Infinity"}


def test_get_an_unknown_job_is_404(client: httpx.Client) -> None:
    """An id nobody submitted is a 404 problem."""
    assert_problem(client.get("/jobs/no-such-job"), 404, "job-not-found")


def test_cancel_a_waiting_job(client: httpx.Client) -> None:
    """DELETE cancels a delayed job; a second DELETE answers false; an unknown id is 404."""
    job = client.post("/jobs", json={"task": "add", "args": [1, 2], "delay": 60}).json()
    response = client.delete(f"/jobs/{job['id']}")
    assert response.status_code == 200
    assert response.json() == {"cancelled": True}
    poll_job(client, job["id"], "cancelled")
    assert client.delete(f"/jobs/{job['id']}").json() == {"cancelled": False}
    assert_problem(client.delete("/jobs/no-such-job"), 404, "job-not-found")


# -- dead letters ----------------------------------------------------------------------


def test_dead_letters_list_retry_and_delete(served: Served, client: httpx.Client) -> None:
    """A dead job is listed, can run again, and can be forgotten."""
    job_id = client.post("/jobs", json={"task": "boom"}).json()["id"]

    def listed() -> bool:
        return job_id in [j["id"] for j in client.get("/dlq").json()]

    wait_until(listed)
    dead = client.get("/dlq").json()[0]
    assert dead["status"] == "dead"
    assert "boom" in dead["error"]

    # Hold the retried run until the retry has answered: a run that dies before the
    # retry took the old entry out races with it (reported against ActorSystem.retry_dead).
    served.doom.clear()
    retried = client.post(f"/dlq/{job_id}/retry")
    assert retried.status_code == 200
    assert retried.json()["id"] == job_id
    assert not listed()
    served.doom.set()
    wait_until(listed)  # it fails again, and is dead again
    assert poll_job(client, job_id, "dead")["attempts"] == 1

    assert client.delete(f"/dlq/{job_id}").json() == {"purged": 1}
    assert client.get("/dlq").json() == []
    assert_problem(client.delete(f"/dlq/{job_id}"), 404, "job-not-found")
    assert_problem(client.post(f"/dlq/{job_id}/retry"), 404, "job-not-found")


def test_purge_every_dead_letter(client: httpx.Client) -> None:
    """DELETE /dlq forgets all dead jobs and says how many."""
    for _ in range(2):
        client.post("/jobs", json={"task": "boom"})
    wait_until(lambda: len(client.get("/dlq").json()) == 2)
    assert client.delete("/dlq").json() == {"purged": 2}
    assert client.get("/dlq").json() == []


# -- queues --------------------------------------------------------------------------------


def test_queues_show_depth_in_flight_and_rate() -> None:
    """One worker taking one job at a time: one in flight, the rest queued; then a rate."""
    with served_system(workers=1, prefetch=1) as s, s.client() as client:
        for _ in range(3):
            client.post("/jobs", json={"task": "block"})

        def settled() -> dict[str, Any] | None:
            info: dict[str, Any] = client.get("/queues").json()
            return info if info["in_flight"] == 1 and info["queues"][0]["depth"] == 2 else None

        info = wait_until(settled)
        assert info is not None
        assert info["queues"][0]["name"] == "default"
        assert info["active"] == 3
        assert info["rate_window_seconds"] == 60
        s.gate.set()
        wait_until(lambda: client.get("/queues").json()["active"] == 0)
        rate = client.get("/queues").json()["queues"][0]["rate"]
        assert rate is None  # no PrometheusObserver on this system: no rate, not a made-up one


# -- auth and health ------------------------------------------------------------------------


def test_routes_need_the_token(served: Served) -> None:
    """Without the token, or with a wrong one, every API route is 401 with WWW-Authenticate."""
    with served.client(token=None) as anonymous, served.client(token="wrong") as wrong:
        for c in (anonymous, wrong):
            for method, path in [
                ("POST", "/jobs"),
                ("GET", "/jobs/x"),
                ("DELETE", "/jobs/x"),
                ("GET", "/queues"),
                ("GET", "/dlq"),
                ("POST", "/dlq/x/retry"),
                ("DELETE", "/dlq/x"),
                ("DELETE", "/dlq"),
                ("GET", "/openapi.json"),
                ("GET", "/docs"),
            ]:
                response = c.request(method, path, json={"task": "add"})
                assert_problem(response, 401)
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/healthz").status_code == 200
    assert served.system.stats()["statuses"]["queued"] == 0


def test_probes_answer_without_the_token_and_to_head(served: Served) -> None:
    """Kubernetes probes send no credentials: /healthz and /readyz answer GET and HEAD anyway."""
    with served.client(token=None) as anonymous:
        for path in ("/healthz", "/readyz"):
            assert anonymous.get(path).status_code == 200, path
            head = anonymous.head(path)
            assert (head.status_code, head.content) == (200, b""), path
        served.system.stop(timeout=5)
        assert anonymous.head("/readyz").status_code == 503


def test_public_docs_opens_the_openapi_document_and_only_it() -> None:
    """With public_docs, /openapi.json and /docs answer without the token; the API does not."""
    with served_system() as s:
        server = serve(s.system, "127.0.0.1", 0, TOKEN, public_docs=True)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as anonymous:
                assert anonymous.get("/openapi.json").json()["info"]["title"] == "actorq"
                assert "swagger" in anonymous.get("/docs").text.lower()
                assert anonymous.get("/queues").status_code == 401
        finally:
            server.stop()


def test_healthz_and_readyz(served: Served, client: httpx.Client) -> None:
    """healthz answers while serving; readyz is 200 while running and 503 once stopped."""
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    served.system.stop(timeout=5)
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["running"] is False
    assert client.get("/healthz").status_code == 200


class PingableJournal(MemoryJournal):
    """A journal with a health check the test can break."""

    reachable = True

    def ping(self) -> bool:
        if not self.reachable:
            raise ConnectionError("journal backend down")
        return True


def test_readyz_is_503_when_the_journal_does_not_answer() -> None:
    """readyz calls journal.ping(); a failing ping makes the system not ready."""
    journal = PingableJournal()
    with served_system(journal=journal) as s, s.client() as client:
        assert client.get("/readyz").status_code == 200
        journal.reachable = False
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["journal"] is False
        assert "journal backend down" in response.json()["detail"]


def test_a_stopped_system_answers_503(served: Served, client: httpx.Client) -> None:
    """Submitting to a stopped system is a 503 problem, not a 500."""
    served.system.stop(timeout=5)
    response = client.post("/jobs", json={"task": "add", "args": [1, 2]})
    assert_problem(response, 503, "system-not-running")
    assert_problem(client.get("/queues"), 503, "system-not-running")


# -- bad input changes nothing ------------------------------------------------------------------

BAD_REQUESTS = [
    # (case, body as JSON or raw bytes, status, problem type)
    ("unknown task", {"task": "nope"}, 422, "unknown-task"),
    ("unknown queue", {"task": "add", "args": [1, 2], "queue": "nope"}, 422, "unknown-queue"),
    ("malformed JSON", b'{"task": "add", ', 400, "malformed"),
    ("NaN is not JSON", b'{"task": "add", "args": [NaN, 1]}', 400, "malformed"),
    ("not an object", [1, 2], 422, "invalid-request"),
    ("missing task", {"args": [1, 2]}, 422, "invalid-request"),
    ("unknown field", {"task": "add", "colour": "red"}, 422, "invalid-request"),
    ("priority as text", {"task": "add", "priority": "high"}, 422, "invalid-request"),
    ("priority out of range", {"task": "add", "priority": 1000}, 422, "invalid-request"),
    ("negative delay", {"task": "add", "delay": -1}, 422, "invalid-request"),
    ("zero timeout", {"task": "add", "timeout": 0}, 422, "invalid-request"),
    ("args not a list", {"task": "add", "args": {"a": 1}}, 422, "invalid-request"),
    ("empty idempotency key", {"task": "add", "idempotency_key": ""}, 422, "invalid-request"),
    ("integer msgpack cannot carry", {"task": "add", "args": [2**70, 1]}, 422, "not-serializable"),
    (
        "encodes over the limit",
        {"task": "add", "args": ["x" * PAYLOAD_LIMIT, 1]},
        413,
        "payload-too-large",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [pytest.param(b, s, k, id=case) for case, b, s, k in BAD_REQUESTS],
)
def test_bad_input_is_refused_and_changes_nothing(
    served: Served, client: httpx.Client, body: Any, status: int, kind: str
) -> None:
    """Each bad request gets its status as a problem body, and no job appears."""
    before = served.system.stats()
    if isinstance(body, bytes):
        response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/jobs", json=body)
    assert_problem(response, status, kind)
    assert served.system.stats() == before


def test_a_body_declared_over_the_limit_is_refused_unread(served: Served) -> None:
    """A Content-Length over the limit is a 413 before the server reads the body."""
    before = served.system.stats()
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=10) as sock:
        head = (
            f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {BODY_LIMIT + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())  # and never the body
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, "the server closed without answering"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"application/problem+json" in answer
    assert served.system.stats() == before


def test_a_chunked_body_over_the_limit_is_refused(served: Served, client: httpx.Client) -> None:
    """Without Content-Length, the server counts the bytes it reads and stops past the limit."""
    before = served.system.stats()

    def chunks() -> Iterator[bytes]:
        yield b'{"task": "add", "args": ["'
        for _ in range(BODY_LIMIT // 8192 + 1):
            yield b"x" * 8192
        yield b'", 1]}'

    response = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")
    assert served.system.stats() == before


def test_backpressure_is_503_with_retry_after() -> None:
    """At the pending-jobs bound, a submission is a 503 with Retry-After and creates nothing."""
    with served_system(max_pending=2) as s, s.client() as client:
        for _ in range(2):
            assert client.post("/jobs", json={"task": "block"}).status_code == 201
        before = s.system.stats()
        response = client.post("/jobs", json={"task": "block"})
        assert_problem(response, 503, "backpressure")
        assert int(response.headers["retry-after"]) >= 1
        assert s.system.stats() == before
        s.gate.set()
        wait_until(lambda: s.system.stats()["active"] == 0)
        assert client.post("/jobs", json={"task": "add", "args": [1, 1]}).status_code == 201


# -- serving ------------------------------------------------------------------------------------


def test_openapi_describes_the_api(client: httpx.Client) -> None:
    """The OpenAPI document lists every route and the submission's typed fields."""
    spec = client.get("/openapi.json").json()
    assert {
        "/jobs",
        "/jobs/{job_id}",
        "/queues",
        "/dlq",
        "/dlq/{job_id}/retry",
        "/dlq/{job_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(spec["paths"])
    submit = spec["components"]["schemas"]["SubmitRequest"]
    assert submit["required"] == ["task"]
    assert submit["additionalProperties"] is False
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()


def test_serve_refuses_a_port_in_use(served: Served) -> None:
    """A second server on a bound port fails to start with OSError, not silently."""
    with pytest.raises(OSError, match="could not start"):
        serve(served.system, "127.0.0.1", served.server.port)


def test_serving_another_address_without_a_token_warns(caplog: pytest.LogCaptureFixture) -> None:
    """Binding beyond loopback with no token logs a warning at start."""
    system = ActorSystem(workers=1)
    with caplog.at_level("WARNING", logger="actorq.service.http"):
        server = serve(system, "0.0.0.0", 0)
    server.stop()
    assert "without a token" in caplog.text


def test_arguments_nested_past_the_bound_answer_422_and_nothing_runs(
    client: httpx.Client,
) -> None:
    """300 levels used to be accepted, run, and then answered 500 (and broke /dlq)."""
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    response = client.post("/jobs", json={"task": "add", "args": [deep, 1]})
    assert_problem(response, 422, "not-serializable")
    assert client.get("/queues").json()["active"] == 0
    assert client.get("/dlq").status_code == 200
