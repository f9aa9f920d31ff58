"""The HTTP API's /schedules routes: recurring schedules, over the ActorSystem facade.

Kept apart from `http.py` so that each module stays one screenful of routes;
`create_app` adds these to its authenticated router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, TypeAdapter
from starlette.responses import Response

from actorq.errors import ScheduleNotFound
from actorq.service.http_models import Deleted, Job, Schedule, ScheduleRequest

if TYPE_CHECKING:
    from actorq.system import ActorSystem

ScheduleName = Annotated[str, Path(min_length=1, max_length=200)]
_SCHEDULES = TypeAdapter(list[Schedule])
Problems = Callable[..., dict[int | str, dict[str, Any]]]


def add_schedule_routes(
    router: APIRouter, system: ActorSystem, problems: Problems, unauthorized: tuple[int, ...]
) -> None:
    """Add the /schedules routes to `router`; `problems` documents the error statuses."""

    @router.get("/schedules", response_model=list[Schedule], responses=problems(*unauthorized, 503))
    def list_schedules() -> Response:
        """Every schedule, with its next 5 fire times in its own zone."""
        items = [Schedule.of(info) for info in system.schedules()]
        return Response(_SCHEDULES.dump_json(items), media_type="application/json")

    @router.put(
        "/schedules/{name}",
        response_model=Schedule,
        responses=problems(400, *unauthorized, 413, 422, 503),
    )
    def put_schedule(name: ScheduleName, request: ScheduleRequest) -> Response:
        """Create the schedule, or change it (what it fired so far is kept)."""
        info = system.schedule(
            name,
            request.cron,
            request.task,
            *request.args,
            tz=request.tz,
            kwargs=request.kwargs,
            catch_up=request.catch_up,
            window=request.window,
            overlap=request.overlap,
            fall_back=request.fall_back,
        )
        return _json(Schedule.of(info))

    @router.get(
        "/schedules/{name}", response_model=Schedule, responses=problems(*unauthorized, 404, 503)
    )
    def get_schedule(name: ScheduleName) -> Response:
        for info in system.schedules():
            if info.name == name:
                return _json(Schedule.of(info))
        raise ScheduleNotFound(name)

    @router.post(
        "/schedules/{name}/pause",
        response_model=Schedule,
        responses=problems(*unauthorized, 404, 503),
    )
    def pause_schedule(name: ScheduleName) -> Response:
        """Stop firing; fires while paused are not caught up."""
        return _json(Schedule.of(system.pause_schedule(name)))

    @router.post(
        "/schedules/{name}/resume",
        response_model=Schedule,
        responses=problems(*unauthorized, 404, 503),
    )
    def resume_schedule(name: ScheduleName) -> Response:
        """Fire again from now on."""
        return _json(Schedule.of(system.resume_schedule(name)))

    @router.post(
        "/schedules/{name}/trigger",
        status_code=201,
        response_model=Job,
        responses=problems(*unauthorized, 404, 503),
    )
    def trigger_schedule(name: ScheduleName) -> Response:
        """Fire now, whatever the expression and the overlap rule: 201 with the job."""
        handle = system.trigger_schedule(name)
        return _json(Job.of(system.job(handle.id)), 201, {"Location": f"/jobs/{handle.id}"})

    @router.delete(
        "/schedules/{name}", response_model=Deleted, responses=problems(*unauthorized, 404, 503)
    )
    def delete_schedule(name: ScheduleName) -> Response:
        """Forget the schedule; jobs it submitted already run on."""
        system.delete_schedule(name)
        return _json(Deleted(deleted=True))


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        model.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )
