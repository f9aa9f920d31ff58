"""Client and AsyncClient: submit to, and ask, a cluster from processes without tasks.

    with actorq.Client("redis://localhost:6379/0?namespace=shop") as client:
        job = client.submit("send_email", "ada@example.com", priority=5)
        job.result(timeout=30)

Requests travel over Redis to whichever node leads the namespace (see
`actorq.transport`). `submit` returns once the leader has made the submission
durable, and raises what the embedded `ActorSystem.submit` raises: arguments
that cannot be encoded or are too large are refused here, before anything is
sent; an unknown task or queue, bad options or backpressure by the leader.
While no leader answers, a call waits up to ``wait`` seconds (URL option,
default 30: longer than a failover takes under the default 10 s lease) and
then raises `JournalUnavailable`, having withdrawn its request.

`result()` waits on a pub/sub channel, not by polling, and keeps waiting across
a leader failover: the outcome lives in Redis, not in the leader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import msgpack
import redis

from actorq.core.job import JobInfo, JobStatus, unpack
from actorq.errors import (
    InvalidSubmission,
    JobCancelled,
    JobFailed,
    JournalUnavailable,
    PayloadTooLarge,
)
from actorq.system import PRIORITY_MAX, PRIORITY_MIN, _explain_encoding_failure
from actorq.transport import redis_wire as w
from actorq.transport.redis_client import WAIT_SLICE, AsyncRedisRequests, RedisRequests, Target

__all__ = ["AsyncClient", "AsyncClientJob", "Client", "ClientJob"]

Outcome = tuple[JobStatus, bytes | None, str | None]

# The longest one blocking wait for a publication: under the connection's
# socket timeout, and a bound on how long a publication missed while Redis
# restarted goes unnoticed (the outcome key is read again after each wait).
_SLICE = WAIT_SLICE


def _job(
    task: str,
    args: Sequence[Any],
    kwargs: dict[str, Any] | None,
    max_payload_bytes: int,
    **options: Any,
) -> dict[str, Any]:
    """Check and encode one submission as the embedded API does; the leader checks the rest."""
    if not isinstance(task, str) or not task:
        raise InvalidSubmission(f"a task is named by a non-empty string, not {task!r}")
    kwargs = kwargs or {}
    if not isinstance(kwargs, dict):
        raise InvalidSubmission("kwargs must be a dict")
    priority = options.get("priority")
    if priority is not None and (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise InvalidSubmission(
            f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX}, not {priority!r}"
        )
    try:
        payload: bytes = msgpack.packb([list(args), kwargs], use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        raise _explain_encoding_failure(tuple(args), kwargs) from None
    if len(payload) > max_payload_bytes:
        raise PayloadTooLarge(len(payload), max_payload_bytes)
    item = {k: v for k, v in options.items() if v is not None}
    return {"task": task, "payload": payload, **item}


def _settle(job_id: str, outcome: Outcome) -> Any:
    status, value, error = outcome
    if status is JobStatus.SUCCEEDED:
        return None if value is None else unpack(value)
    if status is JobStatus.CANCELLED:
        raise JobCancelled(job_id)
    raise JobFailed(job_id, error or "failed")


def _from_info(info: JobInfo) -> Outcome | None:
    if not info.status.terminal:
        return None
    value = None if info.result is None else w.pack(info.result)
    return info.status, value, info.error


class ClientJob:
    """A job submitted through a `Client`."""

    __slots__ = ("_client", "existing", "id")

    def __init__(self, client: Client, job_id: str, existing: bool = False) -> None:
        self._client = client
        self.id = job_id
        self.existing = existing

    def __repr__(self) -> str:
        return f"<ClientJob {self.id}>"

    def status(self) -> JobStatus:
        return self._client.job(self.id).status

    def info(self) -> JobInfo:
        return self._client.job(self.id)

    def result(self, timeout: float | None = None) -> Any:
        return self._client.result(self.id, timeout, known=True)

    def cancel(self) -> bool:
        return self._client.cancel(self.id)


class Client:
    """Talk to the leader of a namespace over Redis; thread-safe."""

    def __init__(
        self, url: str, *, wait: float | None = None, max_payload_bytes: int = 1 << 20
    ) -> None:
        self._target = Target.from_url(url, wait)
        self._requests = RedisRequests(self._target)
        self.max_payload_bytes = max_payload_bytes

    def __repr__(self) -> str:
        return f"Client(namespace={self._target.namespace!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._requests.close()

    def submit(
        self,
        task: str,
        /,
        *args: Any,
        priority: int | None = None,
        delay: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> ClientJob:
        """Submit one job; returns once it is durable."""
        item = _job(
            task,
            args,
            kwargs,
            self.max_payload_bytes,
            priority=priority,
            delay=delay,
            queue=queue,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )
        ((job_id, existing),) = self._requests.call("submit", [item])
        return ClientJob(self, job_id, existing)

    def submit_many(
        self,
        task: str,
        argument_lists: Iterable[Sequence[Any]],
        *,
        priority: int | None = None,
        delay: float | None = None,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> list[ClientJob]:
        """One job per argument list, in one durable batch, all or none."""
        options = {"priority": priority, "delay": delay, "queue": queue, "timeout": timeout}
        items = [_job(task, a, None, self.max_payload_bytes, **options) for a in argument_lists]
        if not items:
            return []
        answer = self._requests.call("submit", items)
        return [ClientJob(self, job_id, existing) for job_id, existing in answer]

    def job(self, job_id: str) -> JobInfo:
        """The job's record (JobNotFound if unknown or expired)."""
        return w.info_from_wire(self._requests.call("job", job_id))

    def cancel(self, job_id: str) -> bool:
        return bool(self._requests.call("cancel", job_id))

    def result(self, job_id: str, timeout: float | None = None, *, known: bool = False) -> Any:
        """Wait for the job's outcome: its value, or JobFailed, JobCancelled, TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key = w.result_key(self._target.namespace, job_id)
        client = self._requests.redis
        try:
            raw: Any = client.get(key)
            if raw is None and not known:
                outcome = _from_info(self.job(job_id))  # JobNotFound for an unknown id
                if outcome is not None:
                    return _settle(job_id, outcome)
            pubsub: Any = cast(Any, client).pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(w.done_channel(self._target.namespace, job_id))
                raw = client.get(key)  # it may have finished before we listened
                while raw is None:
                    left = _SLICE if deadline is None else deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
                    pubsub.get_message(timeout=min(left, _SLICE))
                    raw = client.get(key)
            finally:
                pubsub.close()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise JournalUnavailable(f"Redis cannot be reached: {exc}") from exc
        return _settle(job_id, w.outcome_from_wire(raw))

    def stats(self) -> dict[str, Any]:
        return dict(self._requests.call("stats", None))

    def dead_letters(self, *, limit: int | None = None, after: str | None = None) -> list[JobInfo]:
        """Dead jobs, oldest first: all, or a page of `limit` after the job with id `after`."""
        page = self._requests.call("dead_letters", [limit, after])
        return [w.info_from_wire(d) for d in page]

    def retry_dead(self, job_id: str) -> ClientJob:
        return ClientJob(self, str(self._requests.call("retry_dead", job_id)))

    def purge_dead(self, job_id: str | None = None) -> int:
        return int(self._requests.call("purge_dead", job_id))


class AsyncClientJob:
    """A job submitted through an `AsyncClient`."""

    __slots__ = ("_client", "existing", "id")

    def __init__(self, client: AsyncClient, job_id: str, existing: bool = False) -> None:
        self._client = client
        self.id = job_id
        self.existing = existing

    def __repr__(self) -> str:
        return f"<AsyncClientJob {self.id}>"

    async def status(self) -> JobStatus:
        return (await self._client.job(self.id)).status

    async def result(self, timeout: float | None = None) -> Any:
        return await self._client.result(self.id, timeout, known=True)

    async def cancel(self) -> bool:
        return await self._client.cancel(self.id)


class AsyncClient:
    """`Client` for asyncio programs, on redis.asyncio."""

    def __init__(
        self, url: str, *, wait: float | None = None, max_payload_bytes: int = 1 << 20
    ) -> None:
        self._target = Target.from_url(url, wait)
        self._requests = AsyncRedisRequests(self._target)
        self.max_payload_bytes = max_payload_bytes

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._requests.close()

    async def submit(
        self,
        task: str,
        /,
        *args: Any,
        priority: int | None = None,
        delay: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> AsyncClientJob:
        item = _job(
            task,
            args,
            kwargs,
            self.max_payload_bytes,
            priority=priority,
            delay=delay,
            queue=queue,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )
        ((job_id, existing),) = await self._requests.call("submit", [item])
        return AsyncClientJob(self, job_id, existing)

    async def submit_many(
        self,
        task: str,
        argument_lists: Iterable[Sequence[Any]],
        *,
        priority: int | None = None,
        delay: float | None = None,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> list[AsyncClientJob]:
        options = {"priority": priority, "delay": delay, "queue": queue, "timeout": timeout}
        items = [_job(task, a, None, self.max_payload_bytes, **options) for a in argument_lists]
        if not items:
            return []
        answer = await self._requests.call("submit", items)
        return [AsyncClientJob(self, job_id, existing) for job_id, existing in answer]

    async def job(self, job_id: str) -> JobInfo:
        return w.info_from_wire(await self._requests.call("job", job_id))

    async def cancel(self, job_id: str) -> bool:
        return bool(await self._requests.call("cancel", job_id))

    async def result(
        self, job_id: str, timeout: float | None = None, *, known: bool = False
    ) -> Any:
        key = w.result_key(self._target.namespace, job_id)
        client = self._requests.redis
        raw = await client.get(key)
        if raw is None and not known:
            outcome = _from_info(await self.job(job_id))
            if outcome is not None:
                return _settle(job_id, outcome)
        pubsub: Any = cast(Any, client).pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(w.done_channel(self._target.namespace, job_id))

            async def wait() -> bytes:
                got: Any = await client.get(key)
                while got is None:
                    await pubsub.get_message(timeout=_SLICE)
                    got = await client.get(key)
                return bytes(got)

            try:
                raw = await asyncio.wait_for(wait(), timeout)
            except TimeoutError:
                raise TimeoutError(f"job {job_id} did not finish within {timeout}s") from None
        finally:
            await pubsub.aclose()
        return _settle(job_id, w.outcome_from_wire(raw))

    async def stats(self) -> dict[str, Any]:
        return dict(await self._requests.call("stats", None))

    async def dead_letters(
        self, *, limit: int | None = None, after: str | None = None
    ) -> list[JobInfo]:
        """Dead jobs, oldest first: all, or a page of `limit` after the job with id `after`."""
        page = await self._requests.call("dead_letters", [limit, after])
        return [w.info_from_wire(d) for d in page]

    async def retry_dead(self, job_id: str) -> AsyncClientJob:
        return AsyncClientJob(self, str(await self._requests.call("retry_dead", job_id)))

    async def purge_dead(self, job_id: str | None = None) -> int:
        return int(await self._requests.call("purge_dead", job_id))
