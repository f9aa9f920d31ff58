"""The leader's side of the Redis transport: answer Client requests, publish outcomes.

One thread reads the request stream in batches. Submissions of a batch are
sequenced by the Dispatcher without waiting one by one (``accepted``), then
the thread waits until the last of them is durable and answers them all: a
batch of requests shares one journal write, as the Dispatcher's group commit
intends. Nothing is answered while this node's lease is in doubt: a leader
that lost its lease leaves its requests to its successor, which claims them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import redis

from actorq.actors.board import Outcome, ResultBoard
from actorq.core.job import JobStatus
from actorq.errors import ActorqError, InvalidSubmission
from actorq.transport import redis_wire as w

if TYPE_CHECKING:
    from actorq.job import JobHandle
    from actorq.system import ActorSystem

log = logging.getLogger(__name__)

_BATCH = 512
_CLAIM_IDLE_MS = 2000  # a request read this long ago and not answered: its reader is gone


class PublishingBoard(ResultBoard):
    """The ResultBoard, plus each outcome written to Redis for Clients to read.

    Writes leave from a thread of their own, so the Dispatcher never waits on
    Redis for a publication.
    """

    def __init__(self, client: redis.Redis, namespace: str, retention: float) -> None:
        super().__init__()
        self._redis = client
        self._namespace = namespace
        self._retention_ms = max(1000, int(retention * 1000))
        self._outbox: queue.SimpleQueue[list[tuple[str, Outcome]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send, name="actorq-outcomes", daemon=True)
        self._thread.start()

    def publish(self, outcomes: list[tuple[str, Outcome]]) -> None:
        super().publish(outcomes)
        self._outbox.put(outcomes)

    def forget(self, job_ids: list[str]) -> None:
        super().forget(job_ids)
        self._outbox.put([(job_id, (JobStatus.QUEUED, None, None)) for job_id in job_ids])

    def close(self) -> None:
        self._outbox.put(None)
        self._thread.join(timeout=5)

    def _send(self) -> None:
        ns = self._namespace
        outage = w.Outage(log, "publishing outcomes")
        while (batch := self._outbox.get()) is not None:
            while len(batch) < _BATCH:  # take what else is waiting: one round trip
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._outbox.put(None)
                    break
                batch.extend(more)
            pipe = self._redis.pipeline(transaction=False)
            for job_id, (status, value, error) in batch:
                key = w.result_key(ns, job_id)
                if not status.terminal:
                    pipe.delete(key)  # revived: its old outcome no longer holds
                    continue
                pipe.set(key, w.outcome_to_wire(status, value, error), px=self._retention_ms)
                pipe.publish(w.done_channel(ns, job_id), b"1")
            try:
                pipe.execute()
                outage.ok()
            except (redis.RedisError, OSError) as exc:
                # Clients then learn the outcome from the job record (`job()`).
                outage.failed(exc)


class Gateway:
    """Reads Client requests from Redis and answers them through `system`."""

    def __init__(
        self,
        system: ActorSystem,
        client: redis.Redis,
        namespace: str,
        consumer: str,
        leading: Callable[[], bool],
    ) -> None:
        self._system = system
        self._redis = client
        self._stream = w.requests_key(namespace)
        self._consumer = consumer
        self._leading = leading
        self._stop = threading.Event()
        self._offset = 0.0
        self._offset_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="actorq-gateway", daemon=True)

    def start(self) -> Gateway:
        try:
            self._redis.xgroup_create(self._stream, w.GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        outage = w.Outage(log, "reading client requests")
        claim_at = 0.0
        while not self._stop.is_set():
            if not self._leading():
                return
            try:
                entries: list[tuple[bytes, dict[bytes, bytes]]] = []
                if time.monotonic() >= claim_at:
                    # Requests a fenced or dead leader read and never answered.
                    idle = 0 if claim_at == 0.0 else _CLAIM_IDLE_MS
                    claimed = self._redis.xautoclaim(
                        self._stream, w.GROUP, self._consumer, idle, "0-0", count=_BATCH
                    )
                    entries = [e for e in claimed[1] if e and e[1]]
                    claim_at = time.monotonic() + _CLAIM_IDLE_MS / 2000
                if not entries:
                    read: Any = self._redis.xreadgroup(
                        w.GROUP, self._consumer, {self._stream: ">"}, count=_BATCH, block=200
                    )
                    entries = read[0][1] if read else []
                outage.ok()
                if entries:
                    self._answer(entries)
            except (redis.RedisError, OSError) as exc:
                outage.failed(exc)
                self._stop.wait(0.2)
            except Exception:
                log.exception("the gateway failed on a batch of requests")
                self._stop.wait(0.2)

    def _answer(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        now_ms = self._server_ms()
        replies: list[tuple[bytes, bytes, Any]] = []  # (entry id, reply key, reply)
        waiting: list[tuple[bytes, bytes, list[JobHandle]]] = []
        late: list[bytes] = []
        for entry_id, fields in entries:
            reply_key = fields.get(b"reply")
            try:
                deadline = int(fields.get(b"deadline", b"0"))
            except ValueError:
                deadline = 0
            if reply_key is None or deadline < now_ms:
                late.append(entry_id)  # its client has given up, and says nothing was accepted
                continue
            try:
                op = fields[b"op"].decode()
                body = w.unpack(fields[b"body"])
                if op == "submit":
                    handles = self._submit(body, entry_id.decode())
                    waiting.append((entry_id, reply_key, handles))
                    continue
                value: Any = {"ok": self._call(op, body)}
            except ActorqError as exc:
                value = w.error_reply(exc)
            except Exception as exc:  # a malformed request: the client hears why
                value = w.error_reply(InvalidSubmission(f"malformed request: {exc!r}"))
            replies.append((entry_id, reply_key, value))
        if not self._leading():
            return  # the successor claims these and answers them
        for entry_id, reply_key, handles in waiting:
            try:
                if handles and not handles[-1].durable(self._system.call_timeout):
                    raise TimeoutError("the journal did not confirm in time")
                value = {"ok": [[h.id, h.existing] for h in handles]}
            except ActorqError as exc:
                value = w.error_reply(exc)
            except TimeoutError:
                continue  # unanswered: the client times out and the request is claimed again
            replies.append((entry_id, reply_key, value))
        if not self._leading():
            return
        pipe = self._redis.pipeline(transaction=True)
        for _, reply_key, value in replies:
            pipe.lpush(reply_key, w.pack(value))
            pipe.expire(reply_key, 60)
        done = [entry_id for entry_id, _, _ in replies] + late
        if done:
            pipe.xack(self._stream, w.GROUP, *done)
            pipe.xdel(self._stream, *done)
            pipe.execute()

    def _server_ms(self) -> float:
        """Redis server time in ms, from an offset read again every 10 s (not a call per batch)."""
        now = time.monotonic()
        if now >= self._offset_at:
            seconds, micros = cast(Any, self._redis.time())
            self._offset = int(seconds) * 1000 + int(micros) / 1000 - now * 1000
            self._offset_at = now + 10.0
        return now * 1000 + self._offset

    def _submit(self, body: Any, request: str) -> list[JobHandle]:
        """Sequence the jobs of one request; answered once durable (see `_answer`).

        A job without an idempotency key gets one made of the request's id: a
        request that a leader made durable and died before answering is
        claimed and taken again by its successor, and must find the same jobs.
        """
        from actorq.system import EncodedJob

        if not isinstance(body, list) or not body:
            raise InvalidSubmission("a submission carries a non-empty list of jobs")
        jobs = []
        for n, item in enumerate(body):
            if isinstance(item, dict) and item.get("idempotency_key") is None:
                item["idempotency_key"] = f"request:{request}:{n}"
            if not isinstance(item, dict) or not isinstance(item.get("task"), str):
                raise InvalidSubmission("each job needs a task name")
            known = {"task", "payload", "priority", "delay", "queue", "idempotency_key", "timeout"}
            if unknown := set(item) - known:
                raise InvalidSubmission(f"unknown submission options: {sorted(unknown)}")
            jobs.append(EncodedJob(**item))
        return self._system.submit_encoded(jobs, durability="accepted")

    def _call(self, op: str, body: Any) -> Any:
        system = self._system
        if op == "job":
            return w.info_to_wire(system.job(str(body)))
        if op == "cancel":
            return system.cancel(str(body))
        if op == "stats":
            return system.stats()
        if op == "dead_letters":
            # A page: [limit, after] (an older client sends nothing: all of them).
            limit, after = body if isinstance(body, list) else (None, None)
            page = system.dead_letters(limit=limit, after=after)
            return [w.info_to_wire(info) for info in page]
        if op == "retry_dead":
            return system.retry_dead(str(body)).id
        if op == "purge_dead":
            return system.purge_dead(None if body is None else str(body))
        raise InvalidSubmission(f"unknown request {op!r}; known: {', '.join(w.OPS)}")
