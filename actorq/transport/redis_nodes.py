"""Workers on every node: grants, heartbeats and results over Redis.

Why a stream per node: the leader pushes a grant the moment it decides it
(one XADD; no poll interval between a free slot and its next job), the node
reads its own stream with one blocking XREAD, and the order of grants, resets
and recalls for a worker is the stream's order. Workers long-polling the
leader would need the leader to hold a request per free slot, and an answer
lost with a failover would leave the slot idle until it timed out.

For namespace N and node X:

- ``N:node:X:inbox``: stream, leader to node: ``reset``, ``assign``,
  ``recall``, ``replace``, each tagged with the leader's ``term``.
- ``N:leader:inbox``: stream, nodes to the leader: ``hello``, ``joined``,
  ``ready``, ``finished``, ``recalled``, tagged with the term they answer.
- ``N:node:X:alive``: the node's lease, set for `lease` seconds by one
  heartbeat thread every fifth of it; ``N:nodes``: hash of the nodes' workers.
- ``N:term``: incremented by each new leader.

A grant is (job id, attempt, epoch) under the node's lease: while the alive
key lives, the node holds its jobs; once it has expired the leader declares
the node lost, and each job it ran failed its attempt (at-least-once) or is
dead-lettered as lost (at-most-once). Fencing, twice: a node drops messages
from a term older than the newest it has seen, the leader drops answers from
another term, and the Dispatcher refuses results from a worker incarnation or
attempt that is no longer current (a lost node's workers have no slot left).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Protocol, cast

import redis

from actorq.transport.redis_wire import Outage

log = logging.getLogger(__name__)

BATCH = 512
_TRIM = 10_000  # entries kept per inbox stream: far more than are ever unread


class Mailbox(Protocol):
    """Where the leader's side delivers: the Dispatcher's Address."""

    def tell(self, message: Any) -> None: ...


def keys(namespace: str, node: str = "") -> dict[str, str]:
    return {
        "inbox": f"{namespace}:node:{node}:inbox",
        "alive": f"{namespace}:node:{node}:alive",
        "leader": f"{namespace}:leader:inbox",
        "nodes": f"{namespace}:nodes",
        "term": f"{namespace}:term",
    }


class Sender:
    """XADDs from one thread, in order, many per round trip."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self._redis = client
        self._queue: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, stream: str, fields: dict[str, Any]) -> None:
        self._queue.put((stream, fields))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        outage = Outage(log, f"sending ({self._thread.name})")
        while (item := self._queue.get()) is not None:
            batch = [item]
            while len(batch) < BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            pipe = self._redis.pipeline(transaction=False)
            for stream, fields in batch:
                pipe.xadd(stream, cast(Any, fields), maxlen=_TRIM, approximate=True)
            try:
                pipe.execute()
                outage.ok()
            except (redis.RedisError, OSError) as exc:
                # Lost messages are recovered by the protocol: a grant never
                # delivered fails with its node's lease or is recalled.
                outage.failed(exc)
