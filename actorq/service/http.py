"""The HTTP API: an ActorSystem's facade over FastAPI, served by uvicorn in a thread.

Why a thread in the same process and not a separate service: the system
is embedded (the journal's owner is this process), so the API must call the
same `ActorSystem` object; uvicorn runs its event loop in a daemon thread
and blocking facade calls run in FastAPI's threadpool (every route that
talks to the system is a plain `def`).

Routes (all JSON; errors are RFC 9457 problem details, see http_problems):

    POST   /jobs               submit: 201 with the job (202 if durability=accepted),
                               200 if the idempotency key matched
    GET    /jobs/{id}          the job (404 unknown or expired)
    DELETE /jobs/{id}          cancel: 200 {"cancelled": bool}, 404 unknown
    GET    /queues             depth and finishing rate per queue, jobs in flight
    GET    /dlq                dead jobs
    POST   /dlq/{id}/retry     run a dead job again (404 unknown)
    DELETE /dlq/{id}           forget one dead job (404 unknown)
    DELETE /dlq                forget all dead jobs
    GET    /schedules          recurring schedules, each with its next 5 fire times
    PUT    /schedules/{name}   create or change a schedule (422 bad expression, zone, task)
    GET    /schedules/{name}   one schedule (404 unknown)
    POST   /schedules/{name}/pause | /resume   stop or restart firing (404 unknown)
    POST   /schedules/{name}/trigger           fire now: 201 with the job (404 unknown)
    DELETE /schedules/{name}   forget a schedule (404 unknown)
    GET    /healthz            200 while the process serves (no auth; HEAD too)
    GET    /readyz             200 when running, journal reachable, supervisor healthy; else 503
                               (no auth; HEAD too); on a cluster node standing by: 200 when
                               a leader answers through Redis
    GET    /metrics            Prometheus text format (no auth; 404 without a PrometheusObserver)
    GET    /openapi.json       the OpenAPI document, and /docs its Swagger UI

Refusals: an unknown task, unknown queue, out-of-range option or argument
msgpack cannot encode is 422 (the request is well-formed but names
something that does not exist or cannot be carried: 404 is kept for the
resource in the URL); malformed JSON 400; a body over the limit 413;
Backpressure 503 with Retry-After; a stopped system 503. The facade
validates before it sends anything, so none of them creates a job.

With a token, every route but the probes and /metrics needs
``Authorization: Bearer <token>`` (401 with WWW-Authenticate otherwise;
compared in constant time). The probes stay open because Kubernetes and load
balancers send no credentials, and they tell nothing but "up" and "ready".
/openapi.json and /docs need the token too unless `public_docs` is set: the
document names the exact version, which is all an attacker needs to look up
its known flaws, and an operator who sets a token expects the API closed.
A browser cannot send a bearer header, so browsing /docs needs `public_docs`.
"""

from __future__ import annotations

import hmac
import logging
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.responses import HTMLResponse, JSONResponse, Response

from actorq.errors import JobNotFound
from actorq.job import JobInfo, JobStatus
from actorq.paging import DEFAULT_LIMIT, MAX_LIMIT
from actorq.service.http_models import (
    Cancelled,
    Health,
    Job,
    Problem,
    Purged,
    QueueInfo,
    Queues,
    Readiness,
    SubmitRequest,
)
from actorq.service.http_problems import PROBLEM_JSON, BodyLimit, install_problem_handlers
from actorq.service.http_schedules import add_schedule_routes
from actorq.service.http_server import Server, is_loopback
from actorq.service.metrics import RATE_WINDOW, PrometheusObserver

if TYPE_CHECKING:
    from actorq.service.http_backend import Backend, NodeBackend
    from actorq.system import ActorSystem

__all__ = ["Server", "create_app", "serve"]

logger = logging.getLogger(__name__)

# JSON spells arguments out in up to about twice the bytes msgpack needs
# (small integers: "7, " against 1 byte), plus the envelope's other fields.
# A body inside this limit that still encodes over max_payload_bytes is
# refused by the facade (PayloadTooLarge), also as 413.
ENVELOPE_MARGIN = 64 * 1024

JobId = Annotated[str, Path(min_length=1, max_length=256)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Records per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=256, description="The last id of the previous page."),
]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        s: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": _DESCRIBE[s]}
        for s in statuses
    }


_DESCRIBE = {
    400: "Malformed JSON.",
    401: "Missing or wrong bearer token.",
    404: "No such job or schedule.",
    413: "Request body or encoded arguments over the size limit.",
    422: "Invalid request: wrong types, unknown task or queue, arguments msgpack cannot encode.",
    503: "The system is not running, did not answer, or is at its pending-jobs bound.",
}


def create_app(
    system: ActorSystem,
    token: str | None = None,
    *,
    public_docs: bool = False,
    node: NodeBackend | None = None,
) -> FastAPI:
    """Build the API over `system` (which may be started later); `token` enables bearer auth.

    With a token, /openapi.json and /docs need it as well unless `public_docs`.
    On a cluster node, `node` serves the job, dead-letter and queue routes
    (see http_backend); schedules and metrics stay the node's own.
    """
    from actorq import __version__

    guard_docs = token is not None and not public_docs
    app = FastAPI(
        title="actorq",
        version=__version__,
        description="Submit and inspect jobs of an actorq ActorSystem.",
        openapi_url=None if guard_docs else "/openapi.json",
        docs_url=None if guard_docs else "/docs",
        redoc_url=None if guard_docs else "/redoc",
    )
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, limit=2 * system.max_payload_bytes + ENVELOPE_MARGIN)
    observer = system.observer if isinstance(system.observer, PrometheusObserver) else None
    api: Backend = system if node is None else node
    guarded = APIRouter(dependencies=[Depends(_BearerAuth(token))] if token else [])
    unauthorized = (401,) if token else ()

    @guarded.post(
        "/jobs",
        status_code=201,
        response_model=Job,
        responses={
            200: {"model": Job, "description": "The idempotency key matched a job."},
            202: {"model": Job, "description": "Accepted, not yet durable (durability=accepted)."},
            **_problems(400, *unauthorized, 413, 422, 503),
        },
    )
    def submit_job(request: SubmitRequest) -> Response:
        """Submit a job; answered once it is durable (201) or sequenced (202)."""
        handle = api.submit(
            request.task,
            *request.args,
            kwargs=request.kwargs,
            priority=request.priority,
            delay=request.delay,
            queue=request.queue,
            idempotency_key=request.idempotency_key,
            timeout=request.timeout,
            durability=request.durability,
        )
        job = Job.of(api.job(handle.id))
        status = 200 if handle.existing else 201 if request.durability == "durable" else 202
        return _json(job, status, {"Location": f"/jobs/{handle.id}"})

    @guarded.get("/jobs/{job_id}", response_model=Job, responses=_problems(*unauthorized, 404, 503))
    def get_job(job_id: JobId) -> Response:
        return _json(Job.of(api.job(job_id)))

    @guarded.delete(
        "/jobs/{job_id}", response_model=Cancelled, responses=_problems(*unauthorized, 404, 503)
    )
    def cancel_job(job_id: JobId) -> Response:
        """Cancel a waiting job, or ask a running one to stop."""
        api.job(job_id)  # 404 for an id nobody knows
        return _json(Cancelled(cancelled=api.cancel(job_id)))

    @guarded.get("/queues", response_model=Queues, responses=_problems(*unauthorized, 503))
    def queues() -> Response:
        stats = api.stats()
        depths: dict[str, int] = stats["queues"]
        # The observer counts what this process dispatched: on a standby, nothing.
        rates = (
            observer.rates.per_second(depths)
            if observer is not None and (node is None or node.leading)
            else {}
        )
        return _json(
            Queues(
                queues=[QueueInfo(name=q, depth=d, rate=rates.get(q)) for q, d in depths.items()],
                in_flight=stats["statuses"][JobStatus.RUNNING.value],
                active=stats["active"],
                dead_letters=stats["dead_letters"],
                statuses=stats["statuses"],
                rate_window_seconds=RATE_WINDOW,
            )
        )

    _listings(guarded, system, api, unauthorized)

    @guarded.post(
        "/dlq/{job_id}/retry", response_model=Job, responses=_problems(*unauthorized, 404, 503)
    )
    def retry_dead(job_id: JobId) -> Response:
        """Run a dead job again under its id, attempts reset."""
        handle = api.retry_dead(job_id)
        return _json(Job.of(api.job(handle.id)))

    @guarded.delete(
        "/dlq/{job_id}", response_model=Purged, responses=_problems(*unauthorized, 404, 503)
    )
    def purge_one(job_id: JobId) -> Response:
        purged = api.purge_dead(job_id)
        if not purged:
            raise JobNotFound(job_id)
        return _json(Purged(purged=purged))

    @guarded.delete("/dlq", response_model=Purged, responses=_problems(*unauthorized, 503))
    def purge_all() -> Response:
        return _json(Purged(purged=api.purge_dead()))

    add_schedule_routes(guarded, system, _problems, unauthorized)

    def readyz() -> Response:
        """Ready: running, the journal answers, and no supervisor gave up. No token needed."""
        return _readiness(system, node)

    async def healthz() -> Health:
        """Alive: answers while the process serves. No token needed."""
        return Health(status="alive")

    for method in ("GET", "HEAD"):  # one route per method: each needs its own operation id
        suffix = "" if method == "GET" else "_head"
        app.add_api_route(
            "/readyz",
            readyz,
            methods=[method],
            response_model=Readiness,
            responses={503: {"model": Readiness}},
            operation_id=f"readyz{suffix}",
        )
        app.add_api_route(
            "/healthz",
            healthz,
            methods=[method],
            response_model=Health,
            operation_id=f"healthz{suffix}",
        )

    if guard_docs:

        @guarded.get("/openapi.json", include_in_schema=False)
        def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

        @guarded.get("/docs", include_in_schema=False)
        def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="actorq API")

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **_problems(404)},
    )
    def metrics() -> Response:
        """Prometheus text exposition of the system's PrometheusObserver."""
        if observer is None:
            raise HTTPException(404, "metrics are off: build the system with a PrometheusObserver")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(observer.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(guarded)
    return app


_BEARER = HTTPBearer(auto_error=False, description="The server's API token.")


class _BearerAuth:
    """A dependency that requires `Authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
    ) -> None:
        if credentials is None:
            raise HTTPException(
                401,
                "a bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="actorq"'},
            )
        if not hmac.compare_digest(credentials.credentials.encode(), self._expected):
            raise HTTPException(
                401,
                "the bearer token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="actorq", error="invalid_token"'},
            )


def _readiness(system: ActorSystem, node: NodeBackend | None = None) -> Response:
    if node is not None and not node.leading:
        return _standby_readiness(system, node)
    running = system.running
    healthy = system.failure is None
    journal_ok, detail = _journal_reachable(system)
    if not healthy:
        detail = f"supervision failed: {system.failure}"
    elif not running:
        detail = "the actor system is not running"
    ready = running and journal_ok and healthy
    body = Readiness(
        ready=ready, running=running, journal=journal_ok, supervisor=healthy, detail=detail
    )
    return _json(body, 200 if ready else 503)


def _standby_readiness(system: ActorSystem, node: NodeBackend) -> Response:
    """A standby is ready when a leader answers through Redis: it can serve every job route."""
    answered, detail = node.standby_readiness()
    healthy = system.failure is None
    ready = answered and healthy
    body = Readiness(
        ready=ready, running=answered, journal=answered, supervisor=healthy, detail=detail
    )
    return _json(body, 200 if ready else 503)


def _journal_reachable(system: ActorSystem) -> tuple[bool, str | None]:
    journal = system.journal
    if journal is None:
        return False, "no journal is open"
    ping = getattr(journal, "ping", None)
    if not callable(ping):
        return True, None  # an in-process journal (memory, file) is reachable while open
    try:
        answer = ping()
    except Exception as exc:
        return False, f"the journal did not answer: {exc}"
    return (answer is not False), (None if answer is not False else "the journal did not answer")


def _listings(
    guarded: APIRouter, system: ActorSystem, api: Backend, unauthorized: tuple[int, ...]
) -> None:
    """GET /jobs and GET /dlq: pages in order, the next one after the last id.

    A standby node forwards /dlq to the leader; /jobs reads the node's own
    system, so a standby answers it 503 (it holds no jobs).
    """

    @guarded.get(
        "/jobs",
        response_model=list[Job],
        responses=_problems(*unauthorized, 422, 503),
    )
    def list_jobs(
        status: JobStatus | None = None,
        task: Annotated[str | None, Query(max_length=512)] = None,
        queue: Annotated[str | None, Query(max_length=512)] = None,
        limit: Limit = DEFAULT_LIMIT,
        after: Cursor = None,
    ) -> Response:
        """A page of jobs in submission order, filtered; the next page starts after its
        last id (also given as a `Link: <...>; rel="next"` header when the page is full)."""
        infos = system.jobs(status=status, task=task, queue=queue, limit=limit, after=after)
        query = {"status": status, "task": task, "queue": queue}
        return _page("/jobs", infos, limit, query)

    @guarded.get("/dlq", response_model=list[Job], responses=_problems(*unauthorized, 422, 503))
    def dead_letters(limit: Limit = DEFAULT_LIMIT, after: Cursor = None) -> Response:
        """A page of dead jobs, oldest first; the next page starts after its last id."""
        return _page("/dlq", api.dead_letters(limit=limit, after=after), limit, {})


def _page(path: str, infos: list[JobInfo], limit: int, query: dict[str, Any]) -> Response:
    """A JSON list of jobs; one record that cannot be shown never fails the page."""
    body = b",".join(_job_json(info) for info in infos)
    headers = {}
    if len(infos) == limit:
        params = {k: str(v) for k, v in query.items() if v is not None}
        params.update(limit=str(limit), after=infos[-1].id)
        headers["Link"] = f'<{path}?{urlencode(params)}>; rel="next"'
    return Response(b"[" + body + b"]", media_type="application/json", headers=headers)


def _job_json(info: JobInfo) -> bytes:
    try:
        return Job.of(info).model_dump_json().encode()
    except Exception as exc:  # a record stored by an older or buggier writer
        logger.warning("job %s cannot be shown: %r", info.id, exc)
        return Job.unshowable(info, exc).model_dump_json().encode()


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )


def serve(
    system: ActorSystem,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    *,
    access_log: bool = False,
    public_docs: bool = False,
    startup_timeout: float = 10.0,
    node: NodeBackend | None = None,
) -> Server:
    """Serve `create_app(system, token)` on a uvicorn thread; returns once it listens.

    Port 0 picks a free port (read it from the returned server's `port`).
    Raises OSError if the address cannot be bound. Logs a warning when bound
    beyond loopback without a token.
    """
    if token is None and not is_loopback(host):
        logger.warning(
            "serving the actorq API on %s without a token: anyone who can reach it can "
            "submit and cancel jobs (set --token / ACTORQ_API_TOKEN)",
            host,
        )
    app = create_app(system, token, public_docs=public_docs, node=node)
    return Server.start(app, host, port, access_log=access_log, startup_timeout=startup_timeout)
