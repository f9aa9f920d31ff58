"""Journal in Redis: a stream per persistence id, every write fenced by an owner lease.

Several processes can reach one Redis, so two dispatchers could both write. The
journal therefore claims an owner key (a token with a TTL lease, refreshed by a
heartbeat thread) and every write runs as one Lua script that checks the token
and the last sequence before it writes: nothing can slip in between check and
write, and a stale owner is refused (`JournalFenced`).

Keys, for namespace N and persistence id P:

- ``N:journal:P``: stream, one entry per append (group commit). The entry id is
  ``<last seq of the batch>-0`` so that ``XTRIM MINID <snapshot seq + 1>`` drops
  exactly the batches a snapshot covers; fields ``seq`` (first seq), ``n`` and
  ``data`` (`encode_batch` bytes), ``by`` (the writer's owner token, so that
  who wrote what can be read back after a failover).
- ``N:snapshot:P``: encoded ``{"seq", "state"}``; ``N:last:P``: last sequence.
- ``N:owner``: owner token, expiring after the lease unless refreshed.

A process restarted after a crash finds its predecessor's lease still in Redis.
The constructor waits for it to run out (``claim_wait``, by default twice the
lease), logging once what it waits for; an owner that is alive renews its lease
every fifth of it, and the renewal seen while waiting refuses the claim at once
(`JournalFenced`) instead of at the end of the wait.

Connection errors are retried with exponential backoff for ``retry_for`` seconds
(each attempt is also bounded by the client's socket timeout), then raise
`JournalUnavailable`. An append retried after its first attempt landed, its reply
lost, is recognised (the stream's tip holds the very same batch) and not written
twice.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT

from actorq.errors import (
    InvalidJournalURL,
    JournalCorrupted,
    JournalFenced,
    JournalUnavailable,
    SequenceConflict,
)
from actorq.persistence.codec import decode, decode_batch_at, encode, encode_batch
from actorq.persistence.journal import Snapshot
from actorq.persistence.url import ACCEPTED, parse_journal_url, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

_PAGE = 1000
_TIMING = ("lease", "retry_for", "claim_wait")
_FLAGS = ("waitaof",)
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, TimeoutError)

# Returns the holder's token and its lease's time to live in ms; takes the key
# if it is free or already ours.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], tonumber(ARGV[2])}
end
return {holder, redis.call('PTTL', KEYS[1])}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Shared head of the write scripts. KEYS[1] owner, KEYS[2] last; ARGV[1] token,
# ARGV[2] lease in ms. A free owner key is taken back: nobody else owns the
# namespace, and the sequence check below still guards the log.
_FENCE = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif holder ~= ARGV[1] then
  return redis.error_reply('FENCED ' .. holder)
end
local last = redis.call('GET', KEYS[2]) or '0'
"""

# KEYS[3] stream; ARGV[3] after_seq, [4] first seq, [5] new last seq, [6] n, [7] data,
# [8] '1' when retrying. Sequence numbers travel as decimal strings, not Lua numbers.
_APPEND = """
if last ~= ARGV[3] then
  if ARGV[8] == '1' and last == ARGV[5] then
    local tip = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
    if tip and tip[2][2] == ARGV[4] and tip[2][6] == ARGV[7] then return 'DUPLICATE' end
  end
  return redis.error_reply('CONFLICT ' .. last)
end
redis.call('XADD', KEYS[3], ARGV[5] .. '-0', 'seq', ARGV[4], 'n', ARGV[6], 'data', ARGV[7],
  'by', ARGV[1])
redis.call('SET', KEYS[2], ARGV[5])
return 'OK'
"""

# KEYS[3] snapshot, KEYS[4] stream; ARGV[3] snapshot seq, [4] data, [5] seq + 1.
_SNAPSHOT = """
if tonumber(ARGV[3]) > tonumber(last) then return redis.error_reply('AHEAD ' .. last) end
redis.call('SET', KEYS[3], ARGV[4])
redis.call('XTRIM', KEYS[4], 'MINID', ARGV[5])
return 'OK'
"""


class RedisJournal:
    """A `Journal` in Redis under `namespace`, owned by this instance until `close`.

    Construction claims the namespace or raises `JournalFenced` while another
    live owner holds it; a crashed owner's lease expires after `lease` seconds.
    A successor waits up to `claim_wait` seconds (default: twice the lease) for
    a crashed owner's lease to run out, and is refused as soon as the holder
    renews its lease, which only a live owner does. An explicit `owner` token
    lets a restarted process reclaim its own lease at once; never give one token
    to two live journals. `monotonic` and `sleep` time the claim and the
    retries (tests pass a fake clock). The heartbeat runs in a
    daemon thread that `close` stops. Give a client with
    ``decode_responses=False`` and without redis-py's own retries (as `from_url`
    builds), so that `retry_for` alone bounds how long a call may try.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "actorq",
        owner: str | None = None,
        retry_for: float = 5.0,
        lease: float = 10.0,
        claim_wait: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        standby: threading.Event | None = None,
        waitaof: bool = False,
    ) -> None:
        if client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisJournal needs a client with decode_responses=False")
        if not namespace or lease <= 0.01 or retry_for < 0:
            raise ValueError(f"bad namespace {namespace!r}, lease {lease} or retry_for {retry_for}")
        self._client = client
        self._namespace = namespace
        self._token = (owner or uuid.uuid4().hex).encode()
        self._retry_for = retry_for
        self._lease = lease
        self._monotonic = monotonic
        self._sleep = sleep
        self._owner_key = f"{namespace}:owner"
        self._where = _describe(client)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._append = client.register_script(_FENCE + _APPEND)
        self._snapshot = client.register_script(_FENCE + _SNAPSHOT)
        self._closed = False
        self._owns_client = False
        self._stop = threading.Event()
        self._valid_until = 0.0
        self.lost = threading.Event()  # set once another owner took the namespace
        self.waitaof = waitaof and self._supports_waitaof()
        if standby is not None:
            self._stand_by(standby)
        else:
            self._take_ownership(2 * lease if claim_wait is None else claim_wait)
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"actorq-lease:{namespace}", daemon=True
        )
        self._heartbeat.start()

    def __repr__(self) -> str:
        return f"RedisJournal(namespace={self._namespace!r}, at={self._where!r})"

    def _take_ownership(self, claim_wait: float) -> None:
        give_up = self._monotonic() + claim_wait
        waiting = False
        previous_ttl: int | None = None
        while True:
            holder, ttl = self._retrying("claiming", self._claim_owner)
            if holder == self._token:
                if waiting:
                    log.info("took over namespace %r at %s", self._namespace, self._where)
                return
            name = holder.decode(errors="replace")
            if previous_ttl is not None and ttl > previous_ttl:
                raise JournalFenced(
                    f"the Redis journal namespace {self._namespace!r} at {self._where} is owned"
                    f" by {name}, which is alive (it renewed its lease); it is free once that"
                    " owner closes"
                )
            left = give_up - self._monotonic()
            if left <= 0:
                raise JournalFenced(
                    f"the Redis journal namespace {self._namespace!r} at {self._where} is owned"
                    f" by {name}; it is free once that owner closes or its {self._lease:g} s"
                    f" lease runs out (waited {claim_wait:g} s)"
                )
            if not waiting:
                waiting = True
                log.warning(
                    "namespace %r at %s is held by %s, whose lease ends in %.1f s unless renewed:"
                    " waiting up to %.1f s for it to run out (a crashed owner's lease does)",
                    self._namespace,
                    self._where,
                    name,
                    max(ttl, 0) / 1000,
                    left,
                )
            previous_ttl = ttl
            self._sleep(min(0.1, self._lease / 10, left))

    def _stand_by(self, stop: threading.Event) -> None:
        """Wait, however long, until the namespace is free and ours, or `stop` is set."""
        noted = False
        while True:
            holder, _ = self._retrying("claiming", self._claim_owner)
            if holder == self._token:
                return
            if not noted:
                noted = True
                log.info(
                    "standing by: namespace %r at %s is led by %s",
                    self._namespace,
                    self._where,
                    holder.decode(errors="replace"),
                )
            if stop.wait(min(0.1, self._lease / 10)):
                raise JournalFenced(f"stopped while standing by for {self._namespace!r}")

    def lease_valid(self) -> bool:
        """Whether this owner's lease surely still runs (measured from the last renewal sent).

        A leader checks this before it grants work: after a pause (SIGSTOP, a
        long GC) it is false at once, before any renewal could be refused.
        """
        return not self.lost.is_set() and self._monotonic() < self._valid_until

    @property
    def lease(self) -> float:
        return self._lease

    @property
    def token(self) -> str:
        return self._token.decode()

    def _supports_waitaof(self) -> bool:
        try:
            version = str(self._client.info("server").get("redis_version", "0"))
        except (redis.RedisError, OSError):
            return False
        major, minor = (int(x) for x in version.split(".")[:2])
        if (major, minor) < (7, 2):
            log.warning(
                "waitaof asked for, but Redis %s at %s has no WAITAOF (7.2+): an acknowledged"
                " write is as durable as the server's appendfsync setting makes it",
                version,
                self._where,
            )
            return False
        return True

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        owner: str | None = None,
        standby: threading.Event | None = None,
        **timing: float,
    ) -> RedisJournal:
        """Connect to ``redis://[:password@]host:port/db``, ``rediss://`` or ``unix://``.

        Query options ``namespace``, ``lease``, ``retry_for`` and ``claim_wait`` (seconds)
        are the journal's, keyword arguments override them; other options go to redis-py.
        A URL that cannot be read raises `InvalidJournalURL`, showing it without its password.
        """
        parse_journal_url(url)
        base, _, query = url.partition("?")
        options = parse_qsl(query, keep_blank_values=True)
        ours = {k: v for k, v in options if k in ("namespace", *_TIMING, *_FLAGS)}
        namespace = ours.pop("namespace", "actorq")
        waitaof = ours.pop("waitaof", "0") in ("1", "true", "yes")
        timing = {k: float(v) for k, v in ours.items()} | timing
        if unknown := set(timing) - set(_TIMING):
            raise TypeError(f"unknown RedisJournal options: {sorted(unknown)}")
        rest = urlencode([(k, v) for k, v in options if k not in ("namespace", *_TIMING, *_FLAGS)])
        try:
            client = redis.Redis.from_url(
                f"{base}?{rest}" if rest else base,
                decode_responses=False,
                retry=Retry(NoBackoff(), 0),  # our own loop retries, bounded by retry_for
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidJournalURL(redact(url), redact(str(exc)), ACCEPTED) from None
        try:
            journal = cls(
                client,
                namespace=namespace,
                owner=owner,
                lease=timing.get("lease", 10.0),
                retry_for=timing.get("retry_for", 5.0),
                claim_wait=timing.get("claim_wait"),
                standby=standby,
                waitaof=waitaof,
            )
        except ValueError as exc:
            client.close()
            raise InvalidJournalURL(redact(url), str(exc), ACCEPTED) from None
        except BaseException:
            client.close()
            raise
        journal._owns_client = True
        return journal

    def append(self, persistence_id: str, events: Sequence[Any], *, after_seq: int) -> None:
        self._check_open()
        self._check_owner()
        if not events:
            last = self.last_seq(persistence_id)
            if last != after_seq:
                raise SequenceConflict(persistence_id, after_seq, last)
            return
        data = encode_batch(events)
        keys = [self._owner_key, self._key("last", persistence_id)]
        keys.append(self._key("journal", persistence_id))
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            args: list[EncodableT] = [self._token, self._lease_ms, after_seq, after_seq + 1]
            args += [after_seq + len(events), len(events), data, int(attempts > 1)]
            return self._append(keys=keys, args=args)

        self._write(f"appending to {persistence_id!r}", attempt, persistence_id, after_seq)
        if self.waitaof:
            self._wait_aof(persistence_id)

    def _wait_aof(self, persistence_id: str) -> None:
        """WAITAOF 1 0: return once the local AOF holds this client's writes, fsynced."""
        client: Any = self._client
        local, _ = self._retrying(
            "waiting for the AOF", lambda: client.execute_command("WAITAOF", 1, 0, 5000)
        )
        if int(local) < 1:
            raise JournalUnavailable(
                f"appending to {persistence_id!r}: Redis at {self._where} did not fsync its AOF"
                " within 5 s (is appendonly on?)"
            )

    def replay(self, persistence_id: str, *, after_seq: int = 0) -> Iterator[tuple[int, Any]]:
        self._check_open()
        return self._entries(self._key("journal", persistence_id), after_seq)

    def last_seq(self, persistence_id: str) -> int:
        self._check_open()
        key = self._key("last", persistence_id)
        return int(self._retrying(f"reading {key}", functools.partial(self._client.get, key)) or 0)

    def save_snapshot(self, persistence_id: str, snapshot: Snapshot) -> None:
        self._check_open()
        self._check_owner()
        if snapshot.seq < 0:
            raise ValueError(f"a snapshot's sequence must not be negative, not {snapshot.seq}")
        data = encode({"seq": snapshot.seq, "state": snapshot.state})
        keys = [self._owner_key, self._key("last", persistence_id)]
        keys += [self._key("snapshot", persistence_id), self._key("journal", persistence_id)]
        args: list[EncodableT] = [self._token, self._lease_ms, snapshot.seq, data]
        args.append(snapshot.seq + 1)
        call = functools.partial(self._snapshot, keys=keys, args=args)
        self._write(f"snapshotting {persistence_id!r}", call, persistence_id, snapshot.seq)

    def load_snapshot(self, persistence_id: str) -> Snapshot | None:
        self._check_open()
        key = self._key("snapshot", persistence_id)
        data = self._retrying(f"reading {key}", functools.partial(self._client.get, key))
        if data is None:
            return None
        try:
            content = decode(cast(bytes, data))
            return Snapshot(seq=int(content["seq"]), state=content["state"])
        except (ValueError, TypeError, KeyError) as exc:
            raise JournalCorrupted(key, 0, f"unreadable snapshot: {exc!r}") from exc

    def ping(self) -> bool:
        """Whether Redis answers right now (no retries): for readiness checks."""
        try:
            return bool(self._client.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._heartbeat.join()
        try:
            self._release(keys=[self._owner_key], args=[self._token])
        except (redis.RedisError, OSError) as exc:
            log.warning(
                "could not release %r at %s (its lease ends in %g s): %s",
                self._owner_key,
                self._where,
                self._lease,
                exc,
            )
        if self._owns_client:
            self._client.close()

    @property
    def _lease_ms(self) -> int:
        return int(self._lease * 1000)

    def _key(self, kind: str, persistence_id: str) -> str:
        return f"{self._namespace}:{kind}:{persistence_id}"

    def _check_open(self) -> None:
        if self._closed:
            raise JournalUnavailable(f"the RedisJournal {self._namespace!r} is closed")

    def _check_owner(self) -> None:
        if self.lost.is_set():
            raise JournalFenced(
                f"namespace {self._namespace!r} at {self._where} has another owner now;"
                " this journal lost its lease and writes nothing more"
            )

    def _claim_owner(self) -> tuple[bytes, int]:
        sent = self._monotonic()
        holder, ttl = self._claim(keys=[self._owner_key], args=[self._token, self._lease_ms])
        if bytes(holder) == self._token:
            # Redis set the lease after we sent: counting from `sent` errs early.
            self._valid_until = sent + self._lease
        return bytes(holder), int(ttl)

    def _write(self, what: str, call: Callable[[], Any], persistence_id: str, seq: int) -> None:
        """Run a write script; map its error replies to our exceptions."""
        try:
            self._retrying(what, call)
        except redis.ResponseError as exc:
            kind, _, detail = str(exc).partition(" ")
            if kind == "FENCED":
                self.lost.set()
                raise JournalFenced(
                    f"{what}: namespace {self._namespace!r} at {self._where} is now owned by"
                    f" {detail}; this journal lost its lease"
                ) from None
            if kind == "CONFLICT":
                raise SequenceConflict(persistence_id, seq, int(detail)) from None
            if kind == "AHEAD":
                raise ValueError(f"snapshot at {seq} is past the log's end ({detail})") from None
            raise JournalUnavailable(f"{what}: Redis at {self._where} refused: {exc}") from exc

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        deadline = self._monotonic() + self._retry_for
        delay = 0.02
        while True:
            try:
                return call()
            except _TRANSIENT as exc:
                if self._monotonic() + delay > deadline:
                    raise JournalUnavailable(
                        f"Redis at {self._where} did not answer {what} within"
                        f" {self._retry_for:g} s: {exc}"
                    ) from exc
                log.debug("retrying %s in %.2f s: %s", what, delay, exc)
                self._sleep(delay)
                delay = min(delay * 2, 0.5)
            except redis.ResponseError:
                raise  # an answer, not a failure to answer: the caller reads it
            except redis.RedisError as exc:
                raise JournalUnavailable(f"{what} at {self._where} failed: {exc}") from exc

    def _entries(self, key: str, after_seq: int) -> Iterator[tuple[int, Any]]:
        start = after_seq + 1  # entry ids are the batch's last seq
        expected: int | None = None
        what = f"reading {key}"
        while True:
            fetch = functools.partial(self._client.xrange, key, f"{start}-0", "+", _PAGE)
            page = cast(list[tuple[bytes, dict[bytes, bytes]]], self._retrying(what, fetch) or [])
            for entry_id, fields in page:
                where = f"{key} entry {entry_id.decode()}"
                try:
                    first, count, data = int(fields[b"seq"]), int(fields[b"n"]), fields[b"data"]
                    end = int(entry_id.split(b"-")[0])
                except (KeyError, ValueError) as exc:
                    raise JournalCorrupted(where, 0, f"malformed entry: {exc!r}") from exc
                if end != first + count - 1 or expected not in (None, first):
                    reason = f"sequence gap: entry holds {first}..{end}, expected {expected}"
                    raise JournalCorrupted(where, first, reason)
                events = decode_batch_at(data, where, first)
                if len(events) != count:
                    raise JournalCorrupted(where, first, f"{len(events)} events, not {count}")
                expected = start = end + 1
                skip = max(0, after_seq + 1 - first)
                yield from zip(range(first + skip, end + 1), events[skip:], strict=True)
            if len(page) < _PAGE:
                return

    def _beat(self) -> None:
        """Heartbeat thread: refresh the lease every fifth of it until `close`."""
        failing = False
        while not self._stop.wait(self._lease / 5):
            try:
                holder, _ = self._claim_owner()
            except (redis.RedisError, OSError) as exc:
                level = logging.DEBUG if failing else logging.WARNING  # once an outage
                log.log(level, "lease refresh for %r failed: %s", self._owner_key, exc)
                failing = True
                continue
            failing = False
            if holder != self._token:
                self.lost.set()  # a successor leads now; this journal never writes again
                log.error("%r is held by %r now: this owner steps down", self._owner_key, holder)
                return


def _describe(client: redis.Redis) -> str:
    kwargs = client.get_connection_kwargs()
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
