"""What a node says about the durability Redis gives it."""

from __future__ import annotations

import logging

import pytest

from actorq.persistence.redis import RedisJournal
from actorq.service.node import warn_without_persistence
from tests.redis_server import RedisServer
from tests.test_redis_journal import Note


def test_a_node_warns_when_redis_keeps_nothing_across_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """appendonly no: one warning naming the risk; AOF with fsync always: no warning."""
    server = RedisServer()  # its own: the test changes the server's settings
    try:
        client = server.client()
        with caplog.at_level(logging.WARNING, logger="actorq.service.node"):
            assert warn_without_persistence(client)["appendfsync"] == "always"
        assert not caplog.records
        client.config_set("appendonly", "no")
        with caplog.at_level(logging.WARNING, logger="actorq.service.node"):
            assert warn_without_persistence(client)["aof"] is False
        assert "acknowledged jobs are lost when Redis restarts" in caplog.text
        client.close()
    finally:
        server.stop()


def test_waitaof_is_used_only_where_the_server_has_it(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Asked for on a server without WAITAOF (before 7.2): said once, and appends still work."""
    with caplog.at_level(logging.WARNING, logger="actorq.persistence.redis"):
        journal = RedisJournal.from_url(f"{redis_url}&waitaof=1")
    try:
        version = journal._client.info("server")["redis_version"]
        major, minor = (int(x) for x in str(version).split(".")[:2])
        assert journal.waitaof is ((major, minor) >= (7, 2))
        if not journal.waitaof:
            assert "has no WAITAOF (7.2+)" in caplog.text
        journal.append("p", [Note("kept")], after_seq=0)
        assert list(journal.replay("p")) == [(1, Note("kept"))]
    finally:
        journal.close()
