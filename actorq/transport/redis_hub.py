"""The leader's side of the cluster: grants to nodes, their answers, their deaths."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from actorq.core import messages as m
from actorq.transport.redis_nodes import BATCH, Mailbox, Sender, keys
from actorq.transport.redis_wire import Outage, pack, unpack

log = logging.getLogger(__name__)


class NodeHub:
    """The leader's side: grants to nodes, their answers to the Dispatcher, their deaths."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        dispatcher: Mailbox,
        lease: float,
        leading: Callable[[], bool],
    ) -> None:
        self._redis = client
        self._namespace = namespace
        self._dispatcher = dispatcher
        self._lease = lease
        self._leading = leading
        self._keys = keys(namespace)
        self._sender = Sender(client, "actorq-hub-send")
        self._stop = threading.Event()
        self._nodes: set[str] = set()
        self.term = 0
        self._threads = [
            threading.Thread(target=self._read, name="actorq-hub-inbox", daemon=True),
            threading.Thread(target=self._watch, name="actorq-hub-watch", daemon=True),
        ]

    def start(self) -> NodeHub:
        self.term = int(self._redis.incr(self._keys["term"]))
        self._start_id = self._last_id()
        for thread in self._threads:
            thread.start()
        return self

    def join_known(self) -> None:
        """Tell the Dispatcher of every node alive now (call once it has recovered)."""
        known: Any = self._redis.hgetall(self._keys["nodes"])
        for node, workers in known.items():
            name = node.decode()
            if self._redis.exists(keys(self._namespace, name)["alive"]):
                self._joined(name, unpack(workers))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=5)
        self._sender.close()

    # -- RemoteWorkers, called by the Dispatcher ---------------------------------------

    def tell(self, worker: str, message: Any) -> None:
        body: Any
        if isinstance(message, m.Assign):
            headers = dict(message.headers) if message.headers else None
            kind, body = "assign", [message.epoch, [list(job) for job in message.jobs], headers]
        elif isinstance(message, m.Reset):
            kind, body = "reset", message.epoch
        else:
            log.warning("not sent to %s: %r", worker, message)
            return
        self._send(worker, kind, body)

    def recall(self, worker: str, ids: list[str]) -> None:
        self._send(worker, "recall", ids)

    def replace(self, worker: str, reason: str) -> None:
        self._send(worker, "replace", reason)

    def _send(self, worker: str, kind: str, body: Any) -> None:
        node = worker.partition("/")[0]
        fields = {"term": self.term, "kind": kind, "worker": worker, "body": pack(body)}
        self._sender.send(keys(self._namespace, node)["inbox"], fields)

    # -- threads ---------------------------------------------------------------------------

    def _last_id(self) -> str:
        info: Any = self._redis.xrevrange(self._keys["leader"], count=1)
        return info[0][0].decode() if info else "0-0"

    def _joined(self, node: str, workers: list[str]) -> None:
        self._nodes.add(node)
        self._dispatcher.tell(m.NodeJoined(node, [str(w) for w in workers]))

    def _read(self) -> None:
        last = self._start_id
        stream = self._keys["leader"]
        outage = Outage(log, "reading the leader's inbox")
        while not self._stop.is_set() and self._leading():
            try:
                got: Any = self._redis.xread({stream: last}, count=BATCH, block=200)
                outage.ok()
            except (redis.RedisError, OSError) as exc:
                outage.failed(exc)
                self._stop.wait(0.2)
                continue
            for entry_id, fields in got[0][1] if got else []:
                last = entry_id
                try:
                    self._take(fields)
                except Exception:
                    log.exception("the leader could not take a node's message")

    def _take(self, fields: dict[bytes, bytes]) -> None:
        kind = fields[b"kind"].decode()
        body = unpack(fields[b"body"])
        if kind == "hello":
            node, workers = body
            self._joined(str(node), workers)
            return
        if int(fields[b"term"]) != self.term:
            return  # an answer to another leader
        if kind == "ready":
            worker, incarnation, epoch, credits = body
            message: Any = m.Ready(worker, incarnation, epoch, credits)
        elif kind == "finished":
            worker, incarnation, epoch, results = body
            outcomes = [(r[0], r[1], r[2], r[3], r[4], tuple(r[5]), r[6]) for r in results]
            message = m.Finished(worker, incarnation, epoch, outcomes)
        elif kind == "joined":
            message = m.WorkerJoined(body[0], body[1])
        elif kind == "recalled":
            message = m.Recalled(body[0], list(body[1]))
        else:
            return
        self._dispatcher.tell(message)

    def _watch(self) -> None:
        outage = Outage(log, "checking the nodes' leases")
        while not self._stop.wait(self._lease / 5) and self._leading():
            for node in list(self._nodes):
                try:
                    alive = self._redis.exists(keys(self._namespace, node)["alive"])
                    outage.ok()
                except (redis.RedisError, OSError) as exc:
                    outage.failed(exc)
                    continue
                if not alive:
                    log.warning("node %s stopped heart-beating: its jobs are lost", node)
                    self._nodes.discard(node)
                    self._redis.hdel(self._keys["nodes"], node)
                    self._dispatcher.tell(m.NodeLost(node))
