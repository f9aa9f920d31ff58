"""What the HTTP API's job routes call: the embedded ActorSystem, or a cluster node's view.

`Backend` is the part of `ActorSystem` that the job, dead-letter and queue
routes use. A node of a Redis cluster serves the API for its whole life, not
only while it leads, through a `NodeBackend`: while the node leads, calls go to
its own ActorSystem (no hop through Redis); while it stands by, they go through
an `actorq.Client` to whichever node leads. The Client raises what the embedded
facade raises (UnknownTask, JobNotFound, Backpressure...), so the problem table
answers with the same status codes and bodies on every node. While no leader
answers, a forwarded call waits the Client's bound (three leases: a failover
fits in it) and raises `JournalUnavailable`, which is 503 with Retry-After.

Why one server for the node's life rather than one per term: the port stays
bound across failovers, so a load balancer in front of every node never sees a
node refuse connections because it changed role.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from actorq.client import Client
from actorq.errors import ActorqError
from actorq.transport.redis_client import Target

if TYPE_CHECKING:
    from actorq.core.job import JobInfo
    from actorq.system import ActorSystem, Durability

# How long a standby's /readyz waits for the leader: under the 1 s a
# Kubernetes probe allows by default.
PROBE_WAIT = 0.8


class Submitted(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def existing(self) -> bool: ...


class Backend(Protocol):
    """The facade calls behind the job, dead-letter and queue routes."""

    @property
    def max_payload_bytes(self) -> int: ...

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
        durability: Durability = "durable",
    ) -> Submitted: ...

    def job(self, job_id: str) -> JobInfo: ...

    def cancel(self, job_id: str) -> bool: ...

    def stats(self) -> dict[str, Any]: ...

    def dead_letters(
        self, *, limit: int | None = None, after: str | None = None
    ) -> list[JobInfo]: ...

    def retry_dead(self, job_id: str) -> Submitted: ...

    def purge_dead(self, job_id: str | None = None) -> int: ...


class NodeBackend:
    """A cluster node's Backend: its own system while it leads, the leader otherwise."""

    def __init__(self, system: ActorSystem, url: str) -> None:
        self._system = system
        wait = 3 * Target.from_url(url).lease
        self._client = Client(url, wait=wait, max_payload_bytes=system.max_payload_bytes)
        self._probe = Client(url, wait=min(PROBE_WAIT, wait))
        self._leading = threading.Event()

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def lead(self) -> None:
        """The node's system has recovered and leads: serve from it directly."""
        self._leading.set()

    def stand_by(self) -> None:
        """The term ended (called before the system stops): forward to the next leader."""
        self._leading.clear()

    def close(self) -> None:
        self._client.close()
        self._probe.close()

    @property
    def max_payload_bytes(self) -> int:
        return self._system.max_payload_bytes

    def _api(self) -> ActorSystem | Client:
        return self._system if self._leading.is_set() else self._client

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
        durability: Durability = "durable",
    ) -> Submitted:
        options: dict[str, Any] = {
            "priority": priority,
            "delay": delay,
            "queue": queue,
            "idempotency_key": idempotency_key,
            "timeout": timeout,
            "kwargs": kwargs,
        }
        if self._leading.is_set():
            return self._system.submit(task, *args, durability=durability, **options)
        # A forwarded submission is answered once durable, which "accepted" allows too.
        return self._client.submit(task, *args, **options)

    def job(self, job_id: str) -> JobInfo:
        return self._api().job(job_id)

    def cancel(self, job_id: str) -> bool:
        return self._api().cancel(job_id)

    def stats(self) -> dict[str, Any]:
        return self._api().stats()

    def dead_letters(self, *, limit: int | None = None, after: str | None = None) -> list[JobInfo]:
        return self._api().dead_letters(limit=limit, after=after)

    def retry_dead(self, job_id: str) -> Submitted:
        return self._api().retry_dead(job_id)

    def purge_dead(self, job_id: str | None = None) -> int:
        return self._api().purge_dead(job_id)

    def standby_readiness(self) -> tuple[bool, str]:
        """Ready on a standby: a leader answered a request through Redis within PROBE_WAIT."""
        try:
            self._probe.stats()
        except ActorqError as exc:
            return False, f"standing by, and no leader answers: {exc}"
        return True, "standing by: requests go to the leader through Redis"
