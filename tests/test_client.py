"""actorq.Client against a real node process on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from actorq import (
    AsyncClient,
    Client,
    IdempotencyConflict,
    InvalidSubmission,
    JobFailed,
    JobNotFound,
    JobStatus,
    JournalUnavailable,
    NotSerializable,
    PayloadTooLarge,
    UnknownQueue,
    UnknownTask,
)
from actorq.transport import redis_wire
from tests.cluster import Node, start_node, wait_leader


@pytest.fixture
def node(redis_url: str, tmp_path: Path) -> Iterator[Node]:
    started = start_node(tmp_path, f"{redis_url}&lease=2")
    wait_leader([started])
    yield started
    started.kill()


def test_submit_and_result_through_a_node(node: Node, redis_url: str) -> None:
    """A job submitted by a Client runs on the node; its result comes back to the Client."""
    with Client(redis_url) as client:
        job = client.submit("add", 2, 3)
        assert job.result(timeout=30) == 5
        assert job.status() is JobStatus.SUCCEEDED
        assert client.job(job.id).result == 5
        jobs = client.submit_many("add", [(1, 1), (2, 2)])
        assert [j.result(timeout=30) for j in jobs] == [2, 4]
        again = client.submit("add", 1, kwargs={"b": 9}, idempotency_key="k1")
        same = client.submit("add", 1, kwargs={"b": 9}, idempotency_key="k1")
        assert (same.id, same.existing) == (again.id, True)
        with pytest.raises(IdempotencyConflict):  # the key names other arguments
            client.submit("add", 5, 5, idempotency_key="k1")
        assert client.result(again.id, timeout=30) == 10
        assert client.stats()["statuses"]["succeeded"] == 4


def test_failures_and_dead_letters_through_a_node(node: Node, redis_url: str) -> None:
    """A failing job raises JobFailed at the Client; its dead letter is listed, retried, purged."""
    with Client(redis_url) as client:
        job = client.submit("fail", "no luck")
        with pytest.raises(JobFailed, match="no luck"):
            job.result(timeout=30)
        assert [d.id for d in client.dead_letters()] == [job.id]
        retried = client.retry_dead(job.id)
        with pytest.raises(JobFailed):
            retried.result(timeout=30)
        assert client.purge_dead() == 1
        assert client.dead_letters() == []
        with pytest.raises(JobNotFound):
            client.job("no-such-job")
        with pytest.raises(JobNotFound):
            client.result("no-such-job", timeout=1)
        delayed = client.submit("add", 1, 1, delay=3600)
        assert delayed.status() is JobStatus.SCHEDULED
        assert delayed.cancel() is True
        assert delayed.status() is JobStatus.CANCELLED


def test_bad_input_is_refused_like_the_embedded_api_and_changes_nothing(
    node: Node, redis_url: str
) -> None:
    """Unknown task or queue, bad options, unencodable or oversize arguments: named errors."""
    with Client(redis_url, max_payload_bytes=1000) as client:
        before = client.stats()
        with pytest.raises(UnknownTask):
            client.submit("nope")
        with pytest.raises(UnknownQueue):
            client.submit("add", 1, 2, queue="elsewhere")
        with pytest.raises(InvalidSubmission):
            client.submit("add", 1, 2, priority=1000)
        with pytest.raises(InvalidSubmission):
            client.submit("add", 1, 2, delay=-1)
        with pytest.raises(InvalidSubmission):
            client.submit("add", 1, 2, timeout=0)
        with pytest.raises(InvalidSubmission):
            client.submit("add", 1, 2, idempotency_key="")
        with pytest.raises(NotSerializable):
            client.submit("add", object(), 2)
        with pytest.raises(PayloadTooLarge):
            client.submit("add", "x" * 2000, 2)
        with pytest.raises(UnknownTask):
            client.submit_many("nope", [(1, 2), (3, 4)])
        with pytest.raises(NotSerializable):
            client.submit_many("add", [(1, 2), (object(), 4)])
        assert client.stats() == before


def test_async_client(node: Node, redis_url: str) -> None:
    """AsyncClient submits and waits without blocking the event loop."""

    async def main() -> tuple[int, int]:
        async with AsyncClient(redis_url) as client:
            job = await client.submit("add", 20, 22)
            jobs = await client.submit_many("add", [(1, 2)])
            with pytest.raises(UnknownTask):
                await client.submit("nope")
            return await job.result(timeout=30), await jobs[0].result(timeout=30)

    assert asyncio.run(main()) == (42, 3)


def test_no_leader_means_a_bounded_wait_then_journal_unavailable_and_nothing_kept(
    redis_url: str, redis_server: object
) -> None:
    """With no node up, submit waits its bound, raises, and leaves no request behind."""
    with Client(redis_url, wait=1.0) as client:
        started = time.monotonic()
        with pytest.raises(JournalUnavailable, match="withdrawn before any leader took it"):
            client.submit("add", 1, 2)
        assert time.monotonic() - started < 30
    namespace = redis_url.partition("namespace=")[2]
    raw = redis.Redis.from_url(redis_url.partition("?")[0])
    assert raw.xlen(redis_wire.requests_key(namespace)) == 0


def test_a_node_started_after_a_withdrawn_request_does_not_run_it(
    redis_url: str, tmp_path: Path
) -> None:
    """The withdrawn submission is never accepted later by a leader that comes up."""
    with Client(redis_url, wait=1.0) as client:
        with pytest.raises(JournalUnavailable):
            client.submit("add", 1, 2)
        started = start_node(tmp_path, f"{redis_url}&lease=2")
        try:
            wait_leader([started])
            assert client.stats()["statuses"]["queued"] == 0
            assert sum(client.stats()["statuses"].values()) == 0
        finally:
            started.kill()
