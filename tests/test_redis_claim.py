"""How a RedisJournal claims its namespace: waits out a stale lease, refuses a live owner."""

from __future__ import annotations

import pytest
import redis

from actorq.errors import InvalidJournalURL, JournalFenced
from actorq.persistence.redis import RedisJournal


class FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def client_for(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url.partition("?")[0])


def namespace(redis_url: str) -> str:
    return redis_url.partition("?namespace=")[2]


def test_claim_wait_is_timed_by_the_injected_clock(redis_url: str) -> None:
    """A lease nobody renews is waited on for claim_wait on the given clock, then refused."""
    client = client_for(redis_url)
    client.set(f"{namespace(redis_url)}:owner", "stuck", px=60_000)
    fake = FakeTime()
    try:
        with pytest.raises(JournalFenced, match="waited 30 s"):
            RedisJournal(
                client,
                namespace=namespace(redis_url),
                claim_wait=30,
                monotonic=fake.monotonic,
                sleep=fake.sleep,
            )
    finally:
        client.close()
    assert fake.now >= 30


def test_a_live_owner_is_refused_before_the_wait_runs_out(redis_url: str) -> None:
    """The holder's renewal shows it is alive: the claim is refused without waiting claim_wait."""
    first = RedisJournal.from_url(f"{redis_url}&lease=1")
    try:
        with pytest.raises(JournalFenced, match="alive"):
            RedisJournal.from_url(f"{redis_url}&lease=1&claim_wait=600")
    finally:
        first.close()


def test_a_malformed_redis_url_is_refused_without_its_password() -> None:
    """InvalidJournalURL shows the URL with *** for the password."""
    with pytest.raises(InvalidJournalURL) as refused:
        RedisJournal.from_url("redis://:sesame@localhost:port/0")
    assert "sesame" not in str(refused.value)
    assert ":***@localhost" in str(refused.value)
