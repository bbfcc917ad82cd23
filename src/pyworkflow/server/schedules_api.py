"""The JSON API over schedules and queues: ``/api/schedules[...]`` and ``/api/queues``.

Request bodies are checked field by field (422 with ``errors``, never a
value coerced from another type); a name that cannot be a schedule's is a
404 like any unknown one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from loguru import logger
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyworkflow.errors import (
    PayloadTooLargeError,
    ScheduleExistsError,
    ScheduleNotFoundError,
    SerializationError,
    WorkflowNotFoundError,
)
from pyworkflow.flowshape import queues_json, schedule_json
from pyworkflow.models import Schedule
from pyworkflow.runtime import get_runtime
from pyworkflow.server.wire import ApiError, JsonResponse, parse_json, read_body

__all__ = ["CREATE_FIELDS", "check_flow_fields", "schedule_routes"]

Handler = Callable[[Request], Awaitable[Response]]

_log = logger.bind(component="server")

#: The fields of ``POST /api/schedules`` and the JSON types each accepts.
CREATE_FIELDS: dict[str, str] = {
    "name": "a non-empty string",
    "workflow": "a non-empty string",
    "cron": "a string",
    "every": "a duration: a string such as '15m' or a number of seconds",
    "anchor": "an ISO 8601 date-time string with an offset",
    "timezone": "a string",
    "args": "an array",
    "kwargs": "an object",
    "overlap": "a string",
    "catchup": "a string",
    "grace": "a duration: a string such as '1m' or a number of seconds",
    "catchup_window": "a duration: a string such as '1d' or a number of seconds",
    "queue": "a string or null",
    "paused": "a boolean",
    "replace": "a boolean",
}
_REQUIRED = ("name", "workflow")


def _fits(field: str, value: Any) -> bool:
    if field in ("name", "workflow"):
        return isinstance(value, str) and bool(value)
    if field in ("cron", "timezone", "overlap", "catchup"):
        return isinstance(value, str)
    if field == "anchor":
        return isinstance(value, str) and _iso(value) is not None
    if field == "args":
        return isinstance(value, list)
    if field == "kwargs":
        return isinstance(value, dict)
    if field in ("grace", "catchup_window", "every"):
        return isinstance(value, str | int | float) and not isinstance(value, bool)
    if field == "queue":
        return value is None or isinstance(value, str)
    return isinstance(value, bool)  # paused, replace


def _iso(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _create_options(body: Any) -> dict[str, Any]:
    """The checked body of ``POST /api/schedules`` (types only; values are checked by the API)."""
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object")
    errors = [f"{f}: required, {CREATE_FIELDS[f]}" for f in _REQUIRED if f not in body]
    for field, value in body.items():
        if field not in CREATE_FIELDS:
            errors.append(f"{field}: unknown field")
        elif not _fits(field, value):
            errors.append(f"{field}: must be {CREATE_FIELDS[field]}")
    if "cron" not in body and "every" not in body:
        errors.append(
            f"cron or every: required, {CREATE_FIELDS['cron']} or {CREATE_FIELDS['every']}"
        )
    if errors:
        raise ApiError(422, "invalid request body", sorted(errors))
    options = dict(body)
    if "anchor" in options:
        options["anchor"] = _iso(options["anchor"])
    return options


def check_flow_fields(body: dict[str, Any]) -> list[str]:
    """Errors in the queue fields of ``POST /api/runs`` (queue, priority and the two keys)."""
    from pyworkflow.client import FlowOptions

    errors: list[str] = []
    queue = body.get("queue")
    priority = body.get("priority", 0)
    partition = body.get("partition_key")
    dedup = body.get("dedup_key")
    if queue is not None and not isinstance(queue, str):
        errors.append("queue: must be a string")
    if isinstance(priority, bool) or not isinstance(priority, int):
        errors.append("priority: must be an integer")
    for field, value in (("partition_key", partition), ("dedup_key", dedup)):
        if value is not None and not isinstance(value, str):
            errors.append(f"{field}: must be a string")
    if errors:
        return errors
    try:
        FlowOptions.checked(queue, priority, partition, dedup)
    except (TypeError, ValueError) as exc:
        errors.append(str(exc))
    return errors


async def _empty_body(request: Request, limit: int) -> None:
    """The body of an action (pause, resume, trigger): nothing, or an empty JSON object."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object (or empty)")
    if body:
        raise ApiError(422, "invalid request body", [f"{f}: unknown field" for f in sorted(body)])


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"no schedule named {name!r}")


def _shown(schedule: Schedule) -> dict[str, Any]:
    return schedule_json(get_runtime(), schedule)


def _supported(handler: Handler) -> Handler:
    """501 (not a bare 500) when the configured storage has no schedules or queues."""

    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except NotImplementedError as exc:
            raise ApiError(501, f"the configured storage cannot do this: {exc}") from None

    return answer


def schedule_routes(api: Callable[[Handler], Handler], max_body: Callable[[], int]) -> list[Route]:
    """The routes, each wrapped in ``api`` (auth, JSON content type); ``max_body()`` caps bodies.

    A storage that does not implement schedules or queues (a plugin written
    before them) answers 501.
    """
    import pyworkflow.schedules as schedules

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, api(_supported(handler)), methods=methods)

    async def list_schedules(request: Request) -> Response:
        found = await schedules.alist_schedules()
        return JsonResponse({"schedules": [_shown(s) for s in found]})

    async def create_schedule(request: Request) -> Response:
        options = _create_options(parse_json(await read_body(request, max_body())))
        name, workflow, cron = (
            options.pop("name"),
            options.pop("workflow"),
            options.pop("cron", None),
        )
        try:
            schedule = await schedules.acreate_schedule(name, workflow, cron, **options)
        except WorkflowNotFoundError as exc:
            raise ApiError(404, str(exc)) from None
        except ScheduleExistsError as exc:
            raise ApiError(409, str(exc)) from None
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc)) from None
        except (SerializationError, RecursionError) as exc:
            raise ApiError(422, f"arguments cannot be recorded: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ApiError(422, str(exc), [str(exc)]) from None
        _log.bind(schedule=name, workflow=schedule.workflow_name).info("schedule created over HTTP")
        return JsonResponse(_shown(schedule), status_code=201)

    async def schedules_route(request: Request) -> Response:
        handler = create_schedule if request.method == "POST" else list_schedules
        return await handler(request)

    async def get_schedule(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            return JsonResponse(_shown(await schedules.aget_schedule(name)))
        except (ScheduleNotFoundError, TypeError, ValueError):
            raise _not_found(name) from None

    async def delete_schedule(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            deleted = await schedules.adelete_schedule(name)
        except (TypeError, ValueError):
            deleted = False
        if not deleted:
            raise _not_found(name)
        _log.bind(schedule=name).info("schedule deleted over HTTP")
        return JsonResponse({"name": name, "deleted": True})

    async def schedule_route(request: Request) -> Response:
        handler = delete_schedule if request.method == "DELETE" else get_schedule
        return await handler(request)

    def set_paused(paused: bool) -> Handler:
        async def handler(request: Request) -> Response:
            name = request.path_params["name"]
            await _empty_body(request, max_body())
            change = schedules.apause_schedule if paused else schedules.aresume_schedule
            try:
                schedule = await change(name)
            except (ScheduleNotFoundError, TypeError, ValueError):
                raise _not_found(name) from None
            _log.bind(schedule=name).info(
                "schedule {} over HTTP", "paused" if paused else "resumed"
            )
            return JsonResponse(_shown(schedule))

        return handler

    async def trigger(request: Request) -> Response:
        name = request.path_params["name"]
        await _empty_body(request, max_body())
        try:
            run_id = await schedules.atrigger_schedule(name)
        except (ScheduleNotFoundError, TypeError, ValueError):
            raise _not_found(name) from None
        except WorkflowNotFoundError as exc:
            raise ApiError(404, f"schedule {name!r}: {exc}") from None
        _log.bind(schedule=name, run_id=run_id).info("schedule triggered over HTTP")
        return JsonResponse({"run_id": run_id}, status_code=201)

    async def list_queues(request: Request) -> Response:
        runtime = get_runtime()
        return JsonResponse({"queues": await runtime.acall(queues_json, runtime)})

    return [
        route("/api/schedules", schedules_route, ["GET", "POST"]),
        route("/api/schedules/{name}", schedule_route, ["GET", "DELETE"]),
        route("/api/schedules/{name}/pause", set_paused(True), ["POST"]),
        route("/api/schedules/{name}/resume", set_paused(False), ["POST"]),
        route("/api/schedules/{name}/trigger", trigger, ["POST"]),
        route("/api/queues", list_queues, ["GET"]),
    ]
