"""Fixtures shared by the whole suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actorq import ActorSystem
from tests.helpers import MakeSystem
from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by namespace."""
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL with a namespace of this test's own."""
    return f"{redis_server.url}?namespace=t-{uuid.uuid4().hex}"


@pytest.fixture
def make_system() -> Iterator[MakeSystem]:
    """Build systems (2 workers, memory journal unless told otherwise), stopped after the test."""
    systems: list[ActorSystem] = []

    def make(**options: Any) -> ActorSystem:
        system = ActorSystem(**{"workers": 2, "journal": "memory", **options})
        systems.append(system)
        return system

    yield make
    for system in systems:
        system.stop(timeout=5)
