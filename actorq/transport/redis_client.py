"""The Client's side of the Redis transport: send a request, wait for its one answer.

A request is answered exactly once or not at all. The client waits up to
`wait` seconds (a leader that died is replaced within its lease); past that it
deletes its request from the stream. If the delete removed it, no leader took
it: the client raises `JournalUnavailable` and nothing was accepted. If the
entry was gone already, a leader answered (in the same transaction that
deleted it) or refused it as late; the answer, if any, is in the reply list.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import redis
import redis.asyncio as aioredis

from actorq.errors import InvalidJournalURL, JournalUnavailable
from actorq.persistence.url import ACCEPTED, parse_journal_url, redact
from actorq.transport import redis_wire as w

# The longest single blocking wait for a job's outcome (see Client.result); the
# connections' socket timeout stays above it and above the request wait.
WAIT_SLICE = 20.0

_OURS = ("namespace", "wait", "lease", "retry_for", "claim_wait", "waitaof")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a Client sends: the Redis URL for redis-py, the namespace, the wait bound."""

    redis_url: str
    namespace: str
    wait: float
    lease: float = 10.0

    @classmethod
    def from_url(cls, url: str, wait: float | None = None) -> Target:
        parse_journal_url(url)
        base, _, query = url.partition("?")
        options = parse_qsl(query, keep_blank_values=True)
        ours = {k: v for k, v in options if k in _OURS}
        rest = urlencode([(k, v) for k, v in options if k not in _OURS])
        try:
            bound = float(ours.get("wait", 30.0)) if wait is None else float(wait)
        except ValueError:
            raise InvalidJournalURL(redact(url), "wait must be seconds", ACCEPTED) from None
        if not bound > 0:
            raise InvalidJournalURL(redact(url), "wait must be positive", ACCEPTED)
        namespace = ours.get("namespace", "actorq")
        try:
            lease = float(ours.get("lease", 10.0))
        except ValueError:
            raise InvalidJournalURL(redact(url), "lease must be seconds", ACCEPTED) from None
        return cls(f"{base}?{rest}" if rest else base, namespace, bound, lease)


class _Requests:
    """Numbering and keys shared by the blocking and the asyncio sender."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.stream = w.requests_key(target.namespace)
        self._prefix = f"{target.namespace}:reply:{uuid.uuid4().hex}"
        self._numbers = itertools.count(1)
        self.offset_ms: float | None = None  # Redis server time minus ours

    def fields(self, op: str, body: Any) -> tuple[str, dict[str, Any]]:
        reply = f"{self._prefix}:{next(self._numbers)}"
        wait_ms = self.target.wait * 1000
        margin = min(w.DEADLINE_MARGIN_MS, wait_ms / 4)
        deadline = time.time() * 1000 + (self.offset_ms or 0.0) + wait_ms - margin
        return reply, {"op": op, "reply": reply, "deadline": int(deadline), "body": w.pack(body)}

    def decode(self, raw: bytes) -> Any:
        reply = w.unpack(raw)
        if "error" in reply:
            w.raise_error(reply["error"])
        return reply["ok"]

    def unanswered(self) -> JournalUnavailable:
        return JournalUnavailable(
            f"no leader of namespace {self.target.namespace!r} answered within"
            f" {self.target.wait:g} s; the request was withdrawn before any leader took it"
        )

    @staticmethod
    def offset(server_time: Any) -> float:
        seconds, micros = server_time
        return float(seconds) * 1000 + float(micros) / 1000 - time.time() * 1000


class RedisRequests(_Requests):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.redis = redis.Redis.from_url(
            target.redis_url,
            socket_connect_timeout=5.0,
            socket_timeout=max(target.wait, WAIT_SLICE) + 10,
        )

    def call(self, op: str, body: Any) -> Any:
        try:
            if self.offset_ms is None:
                self.offset_ms = self.offset(self.redis.time())
            reply, fields = self.fields(op, body)
            entry = self.redis.xadd(self.stream, cast(Any, fields))
            got: Any = self.redis.blpop([reply], timeout=self.target.wait)
            if got is None:
                if self.redis.xdel(self.stream, entry):
                    raise self.unanswered()
                raw = self.redis.lpop(reply)
                if raw is None:
                    raise self.unanswered()
                got = (reply.encode(), raw)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise JournalUnavailable(f"Redis cannot be reached: {exc}") from exc
        return self.decode(cast(bytes, got[1]))

    def close(self) -> None:
        self.redis.close()


class AsyncRedisRequests(_Requests):
    def __init__(self, target: Target) -> None:
        super().__init__(target)
        self.redis = aioredis.Redis.from_url(
            target.redis_url,
            socket_connect_timeout=5.0,
            socket_timeout=max(target.wait, WAIT_SLICE) + 10,
        )

    async def call(self, op: str, body: Any) -> Any:
        try:
            if self.offset_ms is None:
                self.offset_ms = self.offset(await self.redis.time())
            reply, fields = self.fields(op, body)
            entry = await self.redis.xadd(self.stream, cast(Any, fields))
            got: Any = await self.redis.blpop([reply], timeout=self.target.wait)
            if got is None:
                if await self.redis.xdel(self.stream, entry):
                    raise self.unanswered()
                raw = await self.redis.lpop(reply)
                if raw is None:
                    raise self.unanswered()
                got = (reply.encode(), raw)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise JournalUnavailable(f"Redis cannot be reached: {exc}") from exc
        return self.decode(cast(bytes, got[1]))

    async def close(self) -> None:
        await self.redis.aclose()
