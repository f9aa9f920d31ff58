"""Server: uvicorn on a daemon thread, started and stopped from ordinary code.

uvicorn's own entry point owns the process (signals, the main thread);
an embedded API must start inside a program that already runs, and stop
when that program says so. `uvicorn.Server` with `should_exit` is the
documented way; this wraps it with a start-up wait that has a deadline and
turns a failed bind (uvicorn calls `sys.exit(1)` on its thread) into an
OSError in the caller.

uvicorn bounds only the idle time after a response (`timeout_keep_alive`); a
connection that never sends a request, or sends it a byte at a time, is held
forever, and every held connection is a file descriptor. `Limits` adds the
rest on uvicorn's h11 protocol: a deadline for a request's head and one for its
body, and a bound on open connections that, when reached, closes the oldest
connection with no request in progress (idle or still sending its head) to let
the new one in, so a flood of idle sockets cannot lock a real client out. A
flood is logged once when it starts and once when it ends, not per socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

# Descriptors left to the rest of the process (journal segments, Redis, worker
# pipes, the listener) when the connection bound is derived from RLIMIT_NOFILE.
_FD_RESERVE = 128


def _default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, (soft - _FD_RESERVE) // 2))


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a client may take and how many connections it may hold.

    - `header_timeout`: seconds from a connection's first byte of a request (or
      from accepting it) to the end of the request head; 10 s is far beyond any
      real client on a LAN or the internet, and short enough that 1,000 slow
      clients cannot hold the server.
    - `body_timeout`: seconds from the request head to the end of its body; the
      body is bounded by the API (about 72 KiB by default), so 30 s only cuts
      clients slower than about 2.5 KB/s.
    - `keep_alive`: seconds an idle connection stays open after a response
      (uvicorn's `timeout_keep_alive`).
    - `max_connections`: open connections at most; by default half the file
      descriptors the process may open, after a reserve, capped at 1,024.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_connections: int = field(default_factory=_default_max_connections)

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "keep_alive"):
            value = getattr(self, name)
            if not 0 < value < 86_400:
                raise ValueError(f"{name} must be between 0 and a day, not {value}")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be positive, not {self.max_connections}")


class _Flood:
    """Counts connections closed to make room; logs when a flood starts and ends."""

    def __init__(self) -> None:
        self.shed = 0

    def note(self, limit: int) -> None:
        if self.shed == 0:
            log.warning(
                "the HTTP API reached its limit of %d connections; closing the oldest idle"
                " ones to admit new clients (logged once per flood)",
                limit,
            )
        self.shed += 1

    def ease(self, open_now: int, limit: int) -> None:
        if self.shed and open_now <= limit // 2:
            log.warning("the HTTP connection flood is over: %d connections were shed", self.shed)
            self.shed = 0


def _guarded_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with deadlines for a request's head and body, and a bound."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    flood = _Flood()

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _opened: float = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = self.loop.time()
            if len(self.connections) > limits.max_connections:
                self._make_room()
            self._arm(limits.header_timeout, "request head")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)
            flood.ease(len(self.connections), limits.max_connections)

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self.cycle is not cycle:  # a request head arrived
                self._arm(limits.body_timeout, "request body")
            if self.cycle is not None and not self.cycle.more_body:
                if self.cycle.response_complete:
                    self._arm_once(limits.header_timeout, "request head")  # the next request
                else:
                    self._disarm()  # the body is in; the application has it
            elif self.cycle is None and self._deadline is None:
                self._arm(limits.header_timeout, "request head")

        def on_response_complete(self) -> None:
            self._disarm()  # uvicorn's keep-alive timer bounds the idle time from here
            super().on_response_complete()

        def _busy(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _make_room(self) -> None:
            idle = [
                c
                for c in self.connections
                if isinstance(c, GuardedH11Protocol) and c is not self and not c._busy()
            ]
            victim = min(idle, key=lambda c: c._opened, default=None)
            flood.note(limits.max_connections)
            (victim or self).transport.close()
            if victim is not None:
                # Its connection_lost comes a loop turn later; until then uvicorn
                # would still count it and answer the newcomer's request 503.
                self.connections.discard(victim)

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire, what)

        def _arm_once(self, seconds: float, what: str) -> None:
            if self._deadline is None:
                self._arm(seconds, what)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self, what: str) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                # Closing is the answer: a 408 would be read by no one, and costs a write.
                self.transport.close()

    return GuardedH11Protocol


class Server:
    """The API served by uvicorn on a daemon thread; `stop()` shuts it down."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        for listener in getattr(self._server, "servers", []):
            for sock in listener.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def start(
        cls,
        app: Any,
        host: str,
        port: int,
        *,
        access_log: bool = False,
        startup_timeout: float = 10.0,
        limits: Limits | None = None,
    ) -> Server:
        """Run `app` (ASGI) on host:port in a daemon thread; return once it listens."""
        import uvicorn

        limits = limits or Limits()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # a library leaves the host program's logging alone
            lifespan="off",
            access_log=access_log,
            timeout_graceful_shutdown=5,
            http=_guarded_protocol(limits),
            timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]
            # Above the bound the guarded protocol sheds idle connections; this only
            # answers 503 should requests in progress alone exceed it.
            limit_concurrency=limits.max_connections + 1,
        )
        server = uvicorn.Server(config)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                server.run()
            except BaseException as exc:  # uvicorn calls sys.exit(1) when it cannot bind
                failure.append(exc)

        thread = threading.Thread(target=run, name="actorq-http", daemon=True)
        thread.start()
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                reason = failure or "exited"
                raise OSError(f"the HTTP API could not start on {host}:{port} ({reason})")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise TimeoutError(f"the HTTP API did not start within {startup_timeout}s")
            time.sleep(0.01)
        return cls(server, thread, host)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, finish open requests (uvicorn's graceful shutdown), join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
