"""The HTTP server under abuse, on a real loopback server: it closes what it must and stays up.

Limits are shortened (half-second deadlines, 32 connections) so that the suite
stays fast; counts stay in the hundreds. Nothing here asserts a duration: every
wait is on a condition, with a bounded deadline.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from actorq import ActorSystem
from actorq.service.http import create_app
from actorq.service.http_server import Limits, Server
from tests.helpers import wait_until
from tests.served import AUTH, TOKEN, with_tasks

LIMITS = Limits(header_timeout=0.5, body_timeout=0.5, keep_alive=0.5, max_connections=32)
DEADLINE = 15.0


@pytest.fixture
def server() -> Iterator[Server]:
    import threading

    gate, doom = threading.Event(), threading.Event()
    system = with_tasks(ActorSystem(workers=2, journal="memory"), gate, doom)
    system.start()
    served = Server.start(create_app(system, TOKEN), "127.0.0.1", 0, limits=LIMITS)
    try:
        yield served
    finally:
        gate.set()
        doom.set()
        served.stop()
        system.stop(timeout=5)


def server_sockets(port: int) -> int:
    """Open sockets of this process bound to the server's port: the listener plus accepted ones.

    The server runs in the test process, next to the test's own client sockets;
    /proc/net/tcp tells them apart by which end holds the port.
    """
    ours = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            ours.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[9] in ours:
                count += 1
    return count


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)


def closed_by_server(sock: socket.socket, deadline: float = DEADLINE) -> bytes:
    """Read until the server closes the connection; return what it sent. Fails past `deadline`."""
    received = b""
    sock.settimeout(deadline)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"the server held the connection for {deadline}s") from None
        if not chunk:
            return received
        received += chunk


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1.1 "):
        return None
    return int(response[9:12])


def healthy(server: Server) -> bool:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=DEADLINE) as client:
        return client.get("/healthz").status_code == 200


def test_a_client_that_never_finishes_its_headers_is_disconnected(server: Server) -> None:
    """A request head cut short is held at most the header deadline, not forever."""
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(server)) for _ in range(20)]
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for sock in socks:
            assert status_of(closed_by_server(sock)) in (None, 408)
    assert healthy(server)


def test_a_header_trickled_a_byte_at_a_time_is_cut_off(server: Server) -> None:
    """Bytes that keep arriving do not extend the head's deadline (slowloris)."""
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(int(DEADLINE / 0.05)):
            readable, _w, _x = select.select([sock], [], [], 0.05)
            if readable:
                break
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            raise AssertionError("the trickling client was never cut off")
        assert status_of(closed_by_server(sock)) in (None, 408)


def test_a_body_that_never_arrives_is_disconnected_without_a_5xx(server: Server) -> None:
    """A declared body that trickles or stalls is bounded by the body deadline."""
    head = (
        b"POST /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(server)) for _ in range(10)]
        for sock in socks:
            sock.sendall(head + b'{"task": "add", ')
        for sock in socks:
            status = status_of(closed_by_server(sock))
            assert status is None or status < 500, status
    assert healthy(server)


def test_an_idle_connection_after_a_response_is_closed(server: Server) -> None:
    """Keep-alive connections are closed once idle past the keep-alive time."""
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response = closed_by_server(sock)
        assert status_of(response) == 200


def test_an_idle_flood_leaves_the_api_reachable_and_the_descriptors_bounded(
    server: Server,
) -> None:
    """Ten times the connection bound in idle sockets: a real client still gets through,
    the server never holds more than its bound, and every idle socket is closed."""
    port = server.port
    peak = 0
    with ExitStack() as stack:
        for _ in range(10 * LIMITS.max_connections):
            stack.enter_context(connect(server))
            peak = max(peak, server_sockets(port))
        assert healthy(server)
        peak = max(peak, server_sockets(port))
        assert peak <= LIMITS.max_connections + 2  # the listener, and the newest before shedding
        wait_until(lambda: server_sockets(port) <= 1, timeout=DEADLINE)
    assert healthy(server)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"task": "add", "args": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b'{"task": "add", "args": [1' + b"0" * 5000 + b", 2]}",
        b'{"task": "add", "args": [1e999999, 2]}',
        b'{"task": "add", "args": [-1e999999, NaN]}',
        b'{"task": "\xff\xfe", "args": [1, 2]}',
        b'{"task": "add", "args": ["\xed\xa0\x80"]}',
    ],
    ids=["deep", "deep-args", "long-integer", "huge-float", "nan", "bad-utf8", "surrogate"],
)
def test_hostile_json_gets_no_5xx(server: Server, body: bytes) -> None:
    """Deep nesting, huge numbers and invalid UTF-8 never make the server fail.

    JSON's 1e999999 reads as infinity, which the submission may accept; the rest
    are refused as client errors.
    """
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=DEADLINE) as client:
        response = client.post("/jobs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (response.status_code, response.text[:200])
    if b"1e999999" not in body:
        assert response.status_code >= 400, response.text[:200]
    assert healthy(server)
