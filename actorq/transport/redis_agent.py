"""A node's side of the cluster: its workers, its heartbeat, its inbox (see `redis_nodes`)."""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import redis

from actorq.actors.board import ResultBoard
from actorq.actors.execution import Pool
from actorq.actors.pool_threads import ThreadPool
from actorq.actors.worker import Grant, worker_factory
from actorq.clock import Clock
from actorq.core import messages as m
from actorq.middleware import MiddlewareStack
from actorq.supervision.address import Address
from actorq.supervision.policy import RestartPolicy
from actorq.supervision.supervisor import ChildSpec, RestartChild, Supervisor
from actorq.transport.redis_nodes import BATCH, Sender, keys
from actorq.transport.redis_wire import Outage, pack, unpack

log = logging.getLogger(__name__)


class _LeaderLink:
    """What a node's Worker takes for its dispatcher: messages go to the leader's inbox."""

    def __init__(self, sender: Sender, stream: str) -> None:
        self._sender = sender
        self._stream = stream
        self.term = 0

    def tell(self, message: Any) -> None:
        if isinstance(message, m.Ready):
            kind, body = "ready", [message.worker, message.incarnation, message.epoch, 1]
        elif isinstance(message, m.Finished):
            body = [message.worker, message.incarnation, message.epoch, message.results]
            kind = "finished"
        elif isinstance(message, m.WorkerJoined):
            kind, body = "joined", [message.worker, message.incarnation]
        elif isinstance(message, m.Recalled):
            kind, body = "recalled", [message.worker, message.ids]
        else:
            log.warning("not sent to the leader: %r", message)
            return
        self._sender.send(self._stream, {"term": self.term, "kind": kind, "body": pack(body)})


class NodeAgent:
    """Runs `workers` Worker actors on this node for whoever leads the namespace."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        workers: int,
        lookup: Callable[[str], Callable[..., Any] | None],
        clock: Clock,
        lease: float,
        middleware: MiddlewareStack | None = None,
        pool: Pool | None = None,
    ) -> None:
        self.node = uuid.uuid4().hex[:12]
        self._redis = client
        self._lease = lease
        self._keys = keys(namespace, self.node)
        self._sender = Sender(client, "actorq-node-send")
        self._link = _LeaderLink(self._sender, self._keys["leader"])
        self._stop = threading.Event()
        self.addresses = {
            f"{self.node}/worker-{i + 1}": Address(f"worker-{i + 1}") for i in range(workers)
        }
        self._grants: dict[str, collections.deque[Grant]] = {
            n: collections.deque() for n in self.addresses
        }
        board = ResultBoard()
        link: Any = self._link
        # One pool for the node's workers, as in the embedded system (threads or processes).
        self._pool: Pool = pool if pool is not None else ThreadPool()
        specs = [
            ChildSpec(
                name,
                worker_factory(
                    name, link, lookup, board, clock, self._pool, middleware or MiddlewareStack()
                ),
                address=address,
                shutdown=1.0,
            )
            for name, address in self.addresses.items()
        ]
        self._root = Supervisor.start(
            specs,
            RestartPolicy(max_restarts=100, within=60.0),
            name=f"node-{self.node}",
            clock=clock,
        )
        self._threads = [
            threading.Thread(target=self._beat, name="actorq-node-heartbeat", daemon=True),
            threading.Thread(target=self._read, name="actorq-node-inbox", daemon=True),
        ]

    def start(self) -> NodeAgent:
        self._hello()
        for thread in self._threads:
            thread.start()
        log.info("node %s runs %d workers", self.node, len(self.addresses))
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            self._root.stop(timeout=10)
        except Exception as exc:  # stopping anyway
            log.warning("node workers did not stop cleanly: %s", exc)
        self._pool.close()
        self._sender.close()
        try:
            self._redis.delete(self._keys["alive"])
            self._redis.hdel(self._keys["nodes"], self.node)
        except (redis.RedisError, OSError):
            pass  # its lease runs out instead

    def _hello(self) -> None:
        self._redis.hset(self._keys["nodes"], self.node, pack(list(self.addresses)))
        self._redis.set(self._keys["alive"], b"1", px=int(self._lease * 1000))
        fields = {"term": 0, "kind": "hello", "body": pack([self.node, list(self.addresses)])}
        self._sender.send(self._keys["leader"], fields)

    def _beat(self) -> None:
        """The node's one heartbeat: renews the lease of every job it holds.

        A thread of its own, woken by an Event: Python switches threads every
        5 ms however busy a handler keeps the interpreter, so user code cannot
        starve it (only a paused process can, and then the lease is meant to end).
        """
        outage = Outage(log, f"the heartbeat of node {self.node}")
        while not self._stop.wait(self._lease / 5):
            try:
                previous = self._redis.set(
                    self._keys["alive"], b"1", px=int(self._lease * 1000), get=True
                )
                if previous is None:  # declared lost meanwhile: join again
                    log.warning("node %s outlived its lease; joining again", self.node)
                    self._hello()
                outage.ok()
            except (redis.RedisError, OSError) as exc:
                outage.failed(exc)

    def _read(self) -> None:
        last = "0-0"
        stream = self._keys["inbox"]
        outage = Outage(log, f"reading the inbox of node {self.node}")
        while not self._stop.is_set():
            try:
                got: Any = self._redis.xread({stream: last}, count=BATCH, block=500)
                outage.ok()
            except (redis.RedisError, OSError) as exc:
                outage.failed(exc)
                self._stop.wait(0.2)
                continue
            for entry_id, fields in got[0][1] if got else []:
                last = entry_id
                try:
                    self._deliver(fields)
                except Exception:
                    log.exception("node %s could not take a message", self.node)

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        term = int(fields[b"term"])
        if term < self._link.term:
            return  # from a leader that has been replaced
        kind = fields[b"kind"].decode()
        worker = fields[b"worker"].decode()
        body = unpack(fields[b"body"])
        address = self.addresses.get(worker)
        if address is None:
            return
        if kind == "reset":
            self._link.term = term
            address.tell(m.Reset(int(body)))
        elif kind == "assign":
            epoch, jobs, headers = body
            grant = Grant([tuple(job) for job in jobs])
            grants = self._grants[worker]
            while grants and grants[0].done:
                grants.popleft()
            grants.append(grant)
            address.tell(m.Assign(int(epoch), grant, headers))
        elif kind == "recall":
            wanted = set(body)
            back = [i for g in self._grants[worker] for i in g.recall(wanted)]
            self._link.tell(m.Recalled(worker, back))
        elif kind == "replace":
            self._root.tell(RestartChild(worker, str(body)))
