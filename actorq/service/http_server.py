"""Server: uvicorn on a daemon thread, started and stopped from ordinary code.

uvicorn's own entry point owns the process (signals, the main thread);
an embedded API must start inside a program that already runs, and stop
when that program says so. `uvicorn.Server` with `should_exit` is the
documented way; this wraps it with a start-up wait that has a deadline and
turns a failed bind (uvicorn calls `sys.exit(1)` on its thread) into an
OSError in the caller.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn


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
    ) -> Server:
        """Run `app` (ASGI) on host:port in a daemon thread; return once it listens."""
        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,  # a library leaves the host program's logging alone
            lifespan="off",
            access_log=access_log,
            timeout_graceful_shutdown=5,
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
