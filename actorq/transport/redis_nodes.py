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

import collections
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol, cast

import redis

from actorq.actors.board import ResultBoard
from actorq.actors.worker import Grant, Worker
from actorq.clock import Clock
from actorq.core import messages as m
from actorq.supervision.address import Address
from actorq.supervision.policy import RestartPolicy
from actorq.supervision.supervisor import ChildSpec, RestartChild, Supervisor
from actorq.transport.redis_wire import Outage, pack, unpack

log = logging.getLogger(__name__)

_BATCH = 512
_TRIM = 10_000  # entries kept per inbox stream: far more than are ever unread


class Mailbox(Protocol):
    """Where the leader's side delivers: the Dispatcher's Address."""

    def tell(self, message: Any) -> None: ...


def _keys(namespace: str, node: str = "") -> dict[str, str]:
    return {
        "inbox": f"{namespace}:node:{node}:inbox",
        "alive": f"{namespace}:node:{node}:alive",
        "leader": f"{namespace}:leader:inbox",
        "nodes": f"{namespace}:nodes",
        "term": f"{namespace}:term",
    }


class _Sender:
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
            while len(batch) < _BATCH:
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


class _LeaderLink:
    """What a node's Worker takes for its dispatcher: messages go to the leader's inbox."""

    def __init__(self, sender: _Sender, stream: str) -> None:
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
    ) -> None:
        self.node = uuid.uuid4().hex[:12]
        self._redis = client
        self._lease = lease
        self._keys = _keys(namespace, self.node)
        self._sender = _Sender(client, "actorq-node-send")
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
        specs = [
            ChildSpec(
                name,
                _worker(name, link, lookup, board, clock),
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
                got: Any = self._redis.xread({stream: last}, count=_BATCH, block=500)
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
            epoch, jobs = body
            grant = Grant([tuple(job) for job in jobs])
            grants = self._grants[worker]
            while grants and grants[0].done:
                grants.popleft()
            grants.append(grant)
            address.tell(m.Assign(int(epoch), grant))
        elif kind == "recall":
            wanted = set(body)
            back = [i for g in self._grants[worker] for i in g.recall(wanted)]
            self._link.tell(m.Recalled(worker, back))
        elif kind == "replace":
            self._root.tell(RestartChild(worker, str(body)))


def _worker(
    name: str,
    link: Any,
    lookup: Callable[[str], Callable[..., Any] | None],
    board: ResultBoard,
    clock: Clock,
) -> Callable[[], Worker]:
    return lambda: Worker(name, dispatcher=link, lookup=lookup, board=board, clock=clock)


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
        self._keys = _keys(namespace)
        self._sender = _Sender(client, "actorq-hub-send")
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
            if self._redis.exists(_keys(self._namespace, name)["alive"]):
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
            kind, body = "assign", [message.epoch, [list(job) for job in message.jobs]]
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
        self._sender.send(_keys(self._namespace, node)["inbox"], fields)

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
                got: Any = self._redis.xread({stream: last}, count=_BATCH, block=200)
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
                    alive = self._redis.exists(_keys(self._namespace, node)["alive"])
                    outage.ok()
                except (redis.RedisError, OSError) as exc:
                    outage.failed(exc)
                    continue
                if not alive:
                    log.warning("node %s stopped heart-beating: its jobs are lost", node)
                    self._nodes.discard(node)
                    self._redis.hdel(self._keys["nodes"], node)
                    self._dispatcher.tell(m.NodeLost(node))
