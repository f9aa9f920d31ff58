"""What travels over Redis between a Client and the cluster's leader, and under which keys.

For namespace N:

- ``N:requests``: stream of requests; the leader reads it with XREADGROUP in
  the group ``leader``, so a request read by a leader that died or lost its
  lease before answering is claimed by its successor (XAUTOCLAIM).
  Fields: ``op``, ``reply`` (a list key), ``deadline`` (Redis server time in
  ms after which the leader must not take the request: a margin before the
  client stops waiting, so an answer in progress arrives in time), ``body``.
- ``N:reply:<client>:<n>``: list; the leader LPUSHes the one answer, in the
  same transaction that acknowledges and deletes the request, so "the entry is
  gone" means "answered or refused for lateness"; the client BLPOPs it.
- ``N:result:<job id>``: a finished job's outcome, kept for the retention;
  ``N:done:<job id>``: pub/sub channel the leader publishes on when it sets it.

Replies are ``{"ok": value}`` or ``{"error": {"type", "message", "attrs"}}``;
errors are rebuilt as the same actorq exception class, so a Client raises
exactly what the embedded API raises.
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack

from actorq import errors
from actorq.core.job import JobInfo, JobStatus

GROUP = "leader"
# A request must be taken this long before its client stops waiting (a quarter
# of the wait, at most 1 s): a batch is answered well within it, and a client
# that gives up must be right that nothing was accepted.
DEADLINE_MARGIN_MS = 1000

OPS = ("submit", "job", "cancel", "stats", "dead_letters", "retry_dead", "purge_dead")


def requests_key(namespace: str) -> str:
    return f"{namespace}:requests"


def result_key(namespace: str, job_id: str) -> str:
    return f"{namespace}:result:{job_id}"


def done_channel(namespace: str, job_id: str) -> str:
    return f"{namespace}:done:{job_id}"


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def error_reply(exc: BaseException) -> dict[str, Any]:
    attrs = {
        k: v
        for k, v in vars(exc).items()
        if isinstance(v, str | int | float | bool | type(None)) and not k.startswith("_")
    }
    return {"error": {"type": type(exc).__name__, "message": str(exc), "attrs": attrs}}


def raise_error(error: dict[str, Any]) -> None:
    """Raise the actorq exception a reply names (never constructs a class it does not know)."""
    name, message = str(error.get("type")), str(error.get("message"))
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.ActorqError)):
        raise errors.ActorqError(f"{name}: {message}")
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    for key, value in dict(error.get("attrs") or {}).items():
        setattr(exc, str(key), value)
    raise exc


def info_to_wire(info: JobInfo) -> dict[str, Any]:
    return info.to_wire()


def info_from_wire(data: dict[str, Any]) -> JobInfo:
    return JobInfo.from_wire(data)


def outcome_to_wire(status: JobStatus, value: bytes | None, error: str | None) -> bytes:
    return pack([status.value, value, error])


def outcome_from_wire(data: bytes) -> tuple[JobStatus, bytes | None, str | None]:
    status, value, error = unpack(data)
    return JobStatus(status), value, error


class Outage:
    """Logs a Redis failure once when it starts and once when it ends, not on every retry."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._failing = False

    def failed(self, exc: BaseException) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        self._log.log(level, "%s failed: %s", self._what, exc)
        self._failing = True

    def ok(self) -> None:
        if self._failing:
            self._failing = False
            self._log.info("%s works again", self._what)
