"""Errors as RFC 9457 problem details, and the request-body limit.

Every refusal of the HTTP API is an `application/problem+json` body with
`type`, `title`, `status` and `detail`, so a client branches on `type` and
shows `detail`; the mapping from actorq's exceptions lives in one table
(`PROBLEMS`) instead of in each route.

The body limit is a pure ASGI middleware rather than a check in the route:
the route only sees a body after FastAPI has read and parsed all of it, and
the point is to refuse a large body before buffering it (from
Content-Length) or as soon as the bytes read pass the limit (a chunked body
has no Content-Length). It answers 413 at once and does not drain the rest;
uvicorn then closes the connection. It also refuses JSON that Python's
parser tolerates but RFC 8259 forbids (NaN, Infinity, and numbers
such as 1e999 that only a float's infinity could hold), as malformed.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from email.message import Message
from typing import Any

import pykka
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from actorq.errors import (
    Backpressure,
    IdempotencyConflict,
    InvalidCronExpression,
    InvalidSchedule,
    InvalidSubmission,
    JobNotFound,
    JournalError,
    NotSerializable,
    PayloadTooLarge,
    ScheduleNotFound,
    SystemNotRunning,
    UnknownQueue,
    UnknownTask,
    UnknownTimeZone,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:actorq:problem:"

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# exception class -> (status, type slug, title). Order matters: first match wins.
PROBLEMS: list[tuple[type[Exception], int, str, str]] = [
    (UnknownTask, 422, "unknown-task", "Unknown task"),
    (UnknownQueue, 422, "unknown-queue", "Unknown queue"),
    (InvalidSubmission, 422, "invalid-submission", "Invalid submission"),
    (NotSerializable, 422, "not-serializable", "Arguments cannot be encoded"),
    (PayloadTooLarge, 413, "payload-too-large", "Payload too large"),
    (IdempotencyConflict, 409, "idempotency-conflict", "Idempotency key reused"),
    (Backpressure, 503, "backpressure", "Too many unfinished jobs"),
    (JobNotFound, 404, "job-not-found", "Job not found"),
    (InvalidCronExpression, 422, "invalid-cron-expression", "Invalid cron expression"),
    (UnknownTimeZone, 422, "unknown-time-zone", "Unknown time zone"),
    (InvalidSchedule, 422, "invalid-schedule", "Invalid schedule"),
    (ScheduleNotFound, 404, "schedule-not-found", "Schedule not found"),
    (SystemNotRunning, 503, "system-not-running", "The actor system is not running"),
    (pykka.ActorDeadError, 503, "system-not-running", "The actor system is not running"),
    (pykka.Timeout, 503, "timeout", "The actor system did not answer in time"),
    (JournalError, 503, "journal-unavailable", "The journal failed"),
]


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    """A problem-details response. `slug` names an actorq problem type; None: about:blank."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    # ensure_ascii: a detail may quote client input, which may hold lone surrogates.
    content = json.dumps(body, ensure_ascii=True, default=str)
    return Response(content, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Render actorq's exceptions, validation errors and HTTP errors as problems."""

    for exc_class, status, slug, title in PROBLEMS:
        app.add_exception_handler(exc_class, _domain_handler(status, slug, title))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)


def _domain_handler(status: int, slug: str, title: str) -> Callable[[Request, Exception], Response]:
    def handle(request: Request, exc: Exception) -> Response:
        headers = None
        if isinstance(exc, Backpressure):
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        elif status == 503:
            headers = {"Retry-After": "1"}
        return problem(status, title, str(exc) or title, slug=slug, headers=headers)

    return handle


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in errors):
        return problem(
            400, "Malformed JSON", "the request body is not valid JSON", slug="malformed"
        )
    summary = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    return problem(422, "Invalid request", summary, slug="invalid-request", errors=errors)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    title = _reason(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, title, detail if detail != title else None, headers=headers)


def _server_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error in %s %s", request.method, request.url.path)
    return problem(500, "Internal server error", "see the server's log", slug="internal")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413) and non-RFC JSON (400), before parsing."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send(scope, receive, send, problem(400, "Bad Request", "bad Content-Length"))
                return
            if int(declared) > self.limit:
                await _send(scope, receive, send, self._too_large(int(declared)))
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send(scope, receive, send, self._too_large(size, at_least=True))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        fault = _json_fault(body) if body and _is_json(headers.get("content-type")) else None
        if fault is not None:
            await _send(scope, receive, send, fault)
            return
        replayed = False

        async def replay() -> ASGIMessage:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int, at_least: bool = False) -> Response:
        over = "over" if at_least else ""
        detail = f"the request body takes {over} {size} bytes; the limit is {self.limit}"
        return problem(413, "Payload too large", " ".join(detail.split()), slug="payload-too-large")


async def _send(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    await response(scope, receive, send)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _OutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as Infinity, which JSON cannot say
        raise _OutOfRange(f"the number {text[:40]} is out of a float's range")
    return value


def _json_fault(body: bytes) -> Response | None:
    """None for RFC 8259 JSON; else the problem to answer (400 malformed, 422 a huge number)."""
    try:
        json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except _OutOfRange as exc:
        return problem(422, "Invalid request", str(exc), slug="invalid-request")
    except (ValueError, RecursionError):
        return problem(
            400, "Malformed JSON", "the request body is not valid JSON", slug="malformed"
        )
    return None
