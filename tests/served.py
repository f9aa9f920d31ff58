"""Shared by the HTTP tests: an ActorSystem served by a real uvicorn server on a free port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from actorq import ActorSystem, RestartPolicy
from actorq.service.http import Server, serve

TOKEN = "test-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Served:
    system: ActorSystem
    server: Server
    gate: threading.Event = field(default_factory=threading.Event)
    doom: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)


def with_tasks(system: ActorSystem, gate: threading.Event, doom: threading.Event) -> ActorSystem:
    """The HTTP tests' tasks: add; boom (dies once `doom` is set, at once by default);
    odd (a JSON-unfriendly result); block (waits for `gate`)."""

    @system.task("add")
    def add(a: int, b: int) -> int:
        return a + b

    @system.task("boom", policy=RestartPolicy(max_restarts=0))
    def boom() -> None:
        doom.wait(30)
        raise RuntimeError("boom")

    @system.task("odd")
    def odd() -> dict[str, Any]:
        return {"raw": b"\x00\xff", "nan": float("nan"), "inf": float("-inf")}

    @system.task("block")
    def block() -> str:
        if not gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return "released"

    return system


@contextmanager
def served_system(token: str | None = TOKEN, **options: Any) -> Iterator[Served]:
    """Start a system with the test tasks and serve it on 127.0.0.1:<free port>."""
    gate, doom = threading.Event(), threading.Event()
    doom.set()
    system = with_tasks(ActorSystem(**{"workers": 2, "journal": "memory", **options}), gate, doom)
    system.start()
    server = serve(system, "127.0.0.1", 0, token)
    try:
        yield Served(system, server, gate, doom)
    finally:
        gate.set()
        doom.set()
        server.stop()
        system.stop(timeout=5)
