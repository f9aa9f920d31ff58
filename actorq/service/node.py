"""A worker on a Redis journal: one node of the namespace's cluster.

A node stands by until it holds the namespace's owner lease, then leads for
one term: it starts the ActorSystem on the journal (recovery from snapshot and
journal), answers Client requests, and publishes outcomes. A term ends when
the node is told to stop, or when its lease is lost or in doubt; then it stops
the system at once (a leader in doubt must not wait for anything) and stands
by again. The fencing token in every journal write guarantees that a node
which has not yet noticed the end of its term cannot write.

With --http, every node serves the HTTP API for its whole life: from its own
system while it leads, through Redis to the leader while it stands by (see
`actorq.service.http_backend`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis

from actorq.clock import SystemClock
from actorq.errors import InvalidJournalURL, JournalError, JournalFenced, JournalUnavailable
from actorq.persistence.redis import RedisJournal
from actorq.service.runner import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    StopSignals,
    WorkerOptions,
    wait_recovered,
)
from actorq.system import ActorSystem
from actorq.transport.redis_agent import NodeAgent
from actorq.transport.redis_client import Target
from actorq.transport.redis_gateway import Gateway, PublishingBoard
from actorq.transport.redis_hub import NodeHub

if TYPE_CHECKING:
    from actorq.service.http_backend import NodeBackend
    from actorq.service.http_server import Server

logger = logging.getLogger(__name__)

_WATCH = 0.05  # how often a leader looks at its lease between renewals


def run_node(system: ActorSystem, options: WorkerOptions, url: str) -> int:
    """Stand by and lead, term after term, until a signal; returns the exit code."""
    try:
        target = Target.from_url(url)
    except InvalidJournalURL as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    client = redis.Redis.from_url(target.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    signals = StopSignals()
    agent: NodeAgent | None = None
    node: NodeBackend | None = None
    server: Server | None = None
    try:
        warn_without_persistence(client)
        try:
            agent = NodeAgent(
                client,
                target.namespace,
                workers=system.worker_count,
                lookup=system._lookup,
                clock=SystemClock(),
                lease=target.lease,
                middleware=system.middleware,
                pool=system._make_pool(),
            ).start()
        except (redis.RedisError, OSError) as exc:
            logger.error("Redis cannot be reached: %s", exc)
            return EXIT_UNAVAILABLE
        if options.http is not None:
            node, server = _serve_http(system, options, url)
            if server is None:
                return EXIT_UNAVAILABLE
        while not signals.requested.is_set():
            try:
                journal = RedisJournal.from_url(url, standby=signals.requested)
            except JournalFenced:
                break  # stopped while standing by
            except InvalidJournalURL as exc:
                logger.error("%s", exc)
                return EXIT_USAGE
            except JournalUnavailable as exc:
                # A node outlives a Redis restart: it stands by until Redis answers.
                logger.warning("standing by, Redis does not answer: %s", exc)
                signals.requested.wait(1.0)
                continue
            except JournalError as exc:
                logger.error("the journal cannot be opened: %s", exc)
                return EXIT_UNAVAILABLE
            code = _lead(system, options, signals, client, target.namespace, journal, node)
            if code is not None:
                return code
        return EXIT_OK
    finally:
        if server is not None:
            server.stop()
        if node is not None:
            node.close()
        if agent is not None:
            agent.stop()
        signals.restore()
        client.close()


def _serve_http(
    system: ActorSystem, options: WorkerOptions, url: str
) -> tuple[NodeBackend, Server | None]:
    """Serve the HTTP API for the node's life, standing by or leading; None if it cannot bind."""
    from actorq.service.http import serve
    from actorq.service.http_backend import NodeBackend

    assert options.http is not None
    node = NodeBackend(system, url)
    host, port = options.http
    try:
        server = serve(
            system,
            host,
            port,
            options.token,
            access_log=options.access_log,
            public_docs=options.public_docs,
            node=node,
        )
    except (OSError, TimeoutError) as exc:
        logger.error("%s", exc)
        return node, None
    logger.info("HTTP API on %s, from whichever node leads", server.url)
    return node, server


def _lead(
    system: ActorSystem,
    options: WorkerOptions,
    signals: StopSignals,
    client: redis.Redis,
    namespace: str,
    journal: RedisJournal,
    node: NodeBackend | None,
) -> int | None:
    """One term as leader; None when the node should stand by again."""
    logger.info("leading namespace %r as %s", namespace, journal.token)
    board = PublishingBoard(client, namespace, system.retention)
    hub = NodeHub(
        client,
        namespace,
        dispatcher=system.dispatcher,
        lease=journal.lease,
        leading=journal.lease_valid,
    ).start()
    system.configure(journal=journal, board=board, remote=hub)
    try:
        system.start()
        wait_recovered(system, signals)
        hub.join_known()
    except Exception as exc:
        logger.error("the actor system did not come up: %s", system.failure or exc)
        hub.stop()
        system.stop(timeout=0)
        board.close()
        return None if journal.lost.is_set() else EXIT_UNAVAILABLE
    gateway = Gateway(system, client, namespace, journal.token, journal.lease_valid).start()
    if node is not None:
        node.lead()
    logger.info(
        "actorq worker running: leader of %r, %d workers, queues %s%s",
        namespace,
        system.worker_count,
        ",".join(system.queues),
        ", serving the HTTP API from this node" if node is not None else "",
    )
    result: int | None = EXIT_OK
    while not signals.requested.wait(_WATCH):
        if not journal.lease_valid():
            logger.error("lost the lease of namespace %r: stepping down", namespace)
            result = None
            break
        if system.failure is not None:
            logger.error("the actor system failed: %s", system.failure)
            result = EXIT_UNAVAILABLE
            break
    if node is not None:
        node.stand_by()  # before the system stops: requests go to the next leader
    gateway.stop()
    hub.stop()
    if result is None:
        journal.lost.set()  # write nothing more, even if the lease key is free again
        system.stop(timeout=0)
        logger.info("standing by again")
    else:
        logger.info("stopping: running jobs may finish for up to %.1fs", options.grace)
        system.stop(timeout=options.grace)
        logger.info("stopped")
    board.close()
    return result


def warn_without_persistence(client: redis.Redis) -> dict[str, Any]:
    """Log a warning when Redis would lose acknowledged jobs on a restart; returns its settings."""
    settings: dict[str, Any] = {}
    try:
        info: Any = client.info("persistence")
        settings["aof"] = bool(int(info.get("aof_enabled", 0)))
        try:
            config: Any = client.config_get("appendfsync")
            settings["appendfsync"] = _text(config.get(b"appendfsync") or config.get("appendfsync"))
            save: Any = client.config_get("save")
            settings["save"] = _text(save.get(b"save") or save.get("save"))
        except redis.ResponseError:  # CONFIG is disabled on many managed servers
            pass
    except (redis.RedisError, OSError) as exc:
        logger.warning("could not read the persistence settings of Redis: %s", exc)
        return settings
    if not settings["aof"]:
        logger.warning(
            "Redis has no append-only file (appendonly no): acknowledged jobs are lost when Redis"
            " restarts%s; see README 'Durability you can read'",
            "" if not settings.get("save") else " (snapshots keep only what they last saved)",
        )
    elif settings.get("appendfsync") == "no":
        logger.warning("Redis fsyncs its AOF when the OS decides (appendfsync no)")
    return settings


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
