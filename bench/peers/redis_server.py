"""A private, throw-away redis-server for one benchmark session.

Standard library only (PING is spoken over a raw socket), so it works in the parent
interpreter and in every peer venv alike.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

STARTUP_TIMEOUT_S = 10.0
ATTEMPTS = 3  # a free port can be taken between choosing it and redis binding it


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(executable: str = "redis-server") -> Iterator[str]:
    """Start redis-server on a free loopback port, yield its URL, stop it afterwards."""
    binary = shutil.which(executable)
    if binary is None:
        raise FileNotFoundError(f"{executable} not found on PATH")
    workdir = tempfile.mkdtemp(prefix="actorq-bench-redis-")
    try:
        for _attempt in range(ATTEMPTS):
            port = free_port()
            proc = _start(binary, port, workdir)
            try:
                if _wait_ready(proc, port):
                    yield f"redis://127.0.0.1:{port}/0"
                    return
            finally:
                _stop(proc)
        raise RuntimeError(f"redis-server did not answer PING after {ATTEMPTS} attempts")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start(binary: str, port: int, workdir: str) -> subprocess.Popen[bytes]:
    # No persistence: nothing a benchmark writes is worth keeping, and snapshots would
    # add fork pauses to the measurements.
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", workdir, "--daemonize", "no", "--loglevel", "warning"]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False  # exited, most likely because the port was taken
        if ping(port):
            return True
        time.sleep(0.02)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
