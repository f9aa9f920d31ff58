"""The Redis backend's own promises: one owner at a time, outages bounded, no double writes.

Everything runs against real redis-server processes; a test that kills Redis
gets a server of its own.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from actorq.errors import JournalFenced, JournalUnavailable, SequenceConflict
from actorq.persistence.codec import event_type
from actorq.persistence.journal import Snapshot
from actorq.persistence.redis import RedisJournal
from tests.helpers import wait_until
from tests.redis_server import RedisServer


@event_type("test.redis.note", 1)
@dataclass(frozen=True, slots=True)
class Note:
    text: str


PID = "dispatcher"
REPO = Path(__file__).resolve().parents[1]
HOLD_SCRIPT = """
import sys
from actorq.errors import JournalFenced
from actorq.persistence.redis import RedisJournal
try:
    journal = RedisJournal.from_url(sys.argv[1], lease=float(sys.argv[2]))
except JournalFenced as exc:
    print(exc, flush=True)
    sys.exit(3)
print("ready", flush=True)
sys.stdin.read()
journal.close()
"""


def namespace(url: str) -> str:
    return url.partition("?namespace=")[2]


def hold(url: str, lease: float = 10.0) -> subprocess.Popen[str]:
    """Start a process that opens a journal on `url` and keeps it until stdin closes."""
    command = [sys.executable, "-c", HOLD_SCRIPT, url, str(lease)]
    return subprocess.Popen(
        command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


@pytest.fixture
def journal(redis_url: str) -> Iterator[RedisJournal]:
    opened = RedisJournal.from_url(redis_url)
    yield opened
    opened.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server this test alone may kill."""
    server = RedisServer()
    yield server
    server.stop()


def test_a_second_journal_on_a_namespace_is_fenced_until_the_first_closes(redis_url: str) -> None:
    """Two journals on one namespace would both write; the second is refused by name."""
    first = RedisJournal.from_url(redis_url)
    with pytest.raises(JournalFenced, match=namespace(redis_url)):
        RedisJournal.from_url(redis_url)
    first.close()
    RedisJournal.from_url(redis_url).close()


def test_a_journal_in_another_process_is_fenced(journal: RedisJournal, redis_url: str) -> None:
    """The owner key fences other processes, not just other instances."""
    process = hold(redis_url)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 3
    assert namespace(redis_url) in out


def test_a_crashed_owners_lease_runs_out_and_a_successor_takes_over(redis_url: str) -> None:
    """An owner killed without closing blocks its namespace only until its lease expires."""
    process = hold(redis_url, lease=1.0)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    with pytest.raises(JournalFenced):
        RedisJournal.from_url(redis_url)
    process.kill()
    process.wait()

    def successor() -> RedisJournal | None:
        try:
            return RedisJournal.from_url(redis_url)
        except JournalFenced:
            return None

    taken_over = wait_until(successor, timeout=10)
    assert taken_over is not None
    taken_over.close()


def test_a_successor_may_wait_out_a_lease_with_claim_wait(redis_url: str) -> None:
    """``claim_wait`` in the URL makes the constructor wait for a dead owner's lease."""
    process = hold(redis_url, lease=1.0)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.kill()
    process.wait()
    RedisJournal.from_url(f"{redis_url}&claim_wait=10&lease=2").close()
    with pytest.raises(ValueError, match="not a number"):
        RedisJournal.from_url(f"{redis_url}&lease=soon")


def test_a_journal_whose_ownership_was_taken_over_cannot_write(redis_url: str) -> None:
    """After its lease passed to a successor, the old owner's writes are refused."""
    old = RedisJournal.from_url(redis_url)
    old.append(PID, [Note("a")], after_seq=0)
    client = redis.Redis.from_url(redis_url.partition("?")[0])
    client.set(f"{namespace(redis_url)}:owner", "successor")  # as after the old lease ran out
    new = RedisJournal.from_url(redis_url, owner="successor")
    with pytest.raises(JournalFenced, match="successor"):
        old.append(PID, [Note("b")], after_seq=1)
    with pytest.raises(JournalFenced):
        old.save_snapshot(PID, Snapshot(1, "state"))
    old.close()
    assert client.get(f"{namespace(redis_url)}:owner") == b"successor"
    assert list(new.replay(PID)) == [(1, Note("a"))]
    assert new.load_snapshot(PID) is None
    new.append(PID, [Note("c")], after_seq=1)
    new.close()
    client.close()


def test_an_outage_fails_appends_after_the_retry_window_and_loses_nothing_acknowledged(
    own_redis: RedisServer,
) -> None:
    """Appends during an outage raise JournalUnavailable; after a restart they work again."""
    journal = RedisJournal.from_url(f"{own_redis.url}?namespace=outage", retry_for=1.0)
    acknowledged: list[Note] = []
    failures: list[BaseException] = []

    def keep_appending() -> None:
        try:
            for n in range(100_000):
                journal.append(PID, [Note(str(n))], after_seq=n)
                acknowledged.append(Note(str(n)))
        except JournalUnavailable as exc:
            failures.append(exc)

    writer = threading.Thread(target=keep_appending)
    writer.start()
    wait_until(lambda: len(acknowledged) >= 50)
    own_redis.kill()
    writer.join(timeout=30)
    assert not writer.is_alive()
    assert f"127.0.0.1:{own_redis.port}" in str(failures[0])
    assert not journal.ping()
    with pytest.raises(JournalUnavailable):
        journal.last_seq(PID)

    own_redis.restart()
    assert journal.ping()
    stored = [event for _seq, event in journal.replay(PID)]
    # The append in flight at the kill may have landed without its answer.
    assert stored in (acknowledged, [*acknowledged, Note(str(len(acknowledged)))])
    assert journal.last_seq(PID) == len(stored)
    journal.append(PID, [Note("after")], after_seq=len(stored))
    assert journal.last_seq(PID) == len(stored) + 1
    journal.close()


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, once armed, swallows one reply and cuts the connection.

    That is the network fault where a write lands but its acknowledgement is lost.
    """

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._trigger: bytes | None = None
        self.dropped = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, trigger: bytes) -> None:
        """Drop the reply to the next request containing `trigger`."""
        self._trigger = trigger

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            doomed = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, doomed, True)).start()
            threading.Thread(target=self._pump, args=(server, client, doomed, False)).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, doomed: threading.Event, request: bool
    ) -> None:
        try:
            while data := source.recv(65536):
                if request and self._trigger is not None and self._trigger in data:
                    self._trigger = None
                    doomed.set()
                if not request and doomed.is_set():
                    self.dropped.set()
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            # shutdown, unlike close, also wakes the other pump blocked in recv
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def test_an_append_retried_after_a_lost_reply_is_not_written_twice(
    redis_server: RedisServer, redis_url: str
) -> None:
    """The retry finds its own batch already at the tip and reports success."""
    proxy = ReplyDroppingProxy(redis_server.port)
    name = namespace(redis_url)
    journal = RedisJournal.from_url(f"redis://127.0.0.1:{proxy.port}/0?namespace={name}")
    journal.append(PID, [Note("first")], after_seq=0)
    proxy.arm(b"lost-reply-marker")
    journal.append(PID, [Note("lost-reply-marker"), Note("x")], after_seq=1)
    assert proxy.dropped.is_set()
    assert journal.last_seq(PID) == 3
    assert [e for _s, e in journal.replay(PID)] == [
        Note("first"),
        Note("lost-reply-marker"),
        Note("x"),
    ]
    assert redis_server.client().xlen(f"{name}:journal:{PID}") == 2
    journal.close()
    proxy.close()


def test_repeating_an_acknowledged_batch_is_a_conflict_not_a_retry(journal: RedisJournal) -> None:
    """Only a retry inside one append call may match the tip; a repeated call conflicts."""
    journal.append(PID, [Note("once")], after_seq=0)
    with pytest.raises(SequenceConflict):
        journal.append(PID, [Note("once")], after_seq=0)
    assert list(journal.replay(PID)) == [(1, Note("once"))]


def test_from_url_takes_the_namespace_from_the_query_and_unix_sockets(
    redis_server: RedisServer, redis_url: str
) -> None:
    """``?namespace=`` picks the key prefix and is not passed on; other options are."""
    name = namespace(redis_url)
    url = f"unix://{redis_server.unix_socket}?namespace={name}&socket_timeout=3"
    journal = RedisJournal.from_url(url)
    journal.append(PID, [Note("via unix")], after_seq=0)
    assert journal.ping()
    client = redis_server.client()
    assert sorted(client.keys(f"{name}:*")) == [
        f"{name}:journal:{PID}".encode(),
        f"{name}:last:{PID}".encode(),
        f"{name}:owner".encode(),
    ]
    journal.close()
    assert client.keys(f"{name}:owner") == []
    assert not [t for t in threading.enumerate() if t.name == f"actorq-lease:{name}"]
    journal.close()  # a second close is harmless
    with pytest.raises(JournalUnavailable, match="closed"):
        journal.last_seq(PID)


def test_a_client_that_decodes_responses_is_refused(redis_server: RedisServer) -> None:
    """Batches are bytes; a decoding client would corrupt them on the way back."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisJournal(client, namespace="never-claimed")
    client.close()
