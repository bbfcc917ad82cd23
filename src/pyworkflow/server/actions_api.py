"""Acting on one run: retry it, check it against the code, resume one of its hooks.

``POST /api/runs/{run_id}/retry``, ``POST /api/runs/{run_id}/replay`` and
``POST /api/runs/{run_id}/hooks/{correlation_id}/resume``. The UI's run page
calls the same functions (:func:`retry`, :func:`replay`, :func:`resume`), so
both surfaces share one implementation and one set of refusals (an
:class:`~pyworkflow.server.wire.ApiError` with the HTTP status and a message).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
from loguru import logger
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyworkflow import client
from pyworkflow.engine import ReplayReport
from pyworkflow.errors import (
    CorruptDataError,
    HookNotFoundError,
    PayloadTooLargeError,
    PayloadValidationError,
    RunNotFoundError,
    SerializationError,
    WorkflowNotFoundError,
)
from pyworkflow.jsonshape import jsonable
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.server.schedules_api import _empty_body  # the same rule for a body-less action
from pyworkflow.server.wire import ApiError, JsonResponse, parse_json, read_body

__all__ = [
    "action_routes",
    "hook_token",
    "live_hook_ids",
    "replay",
    "replay_json",
    "resume",
    "retry",
]

Handler = Callable[[Request], Awaitable[Response]]

_log = logger.bind(component="server")


def _no_run(run_id: str) -> ApiError:
    return ApiError(404, f"no run {run_id!r}")


async def _events(run_id: str) -> list[Event]:
    """The run's log; 404 when there is no such run."""
    try:
        await client.aget_run(run_id)
        return await client.aget_events(run_id)
    except (RunNotFoundError, ValueError, TypeError):
        raise _no_run(run_id) from None


async def retry(run_id: str) -> RunStatus:
    """Retry the failed run ``run_id``; the status the retry gave it (pending, or queued).

    (:func:`pyworkflow.client.aretry_run_status`: the retry's own status, not a later
    read that a worker may have overtaken.) 404 when there is no such run, 409 when it is
    not failed (only failed runs can be retried).
    """
    try:
        status = await client.aretry_run_status(run_id)
        if status is None:
            info = await client.aget_run(run_id)
    except (RunNotFoundError, ValueError, TypeError):
        raise _no_run(run_id) from None
    if status is None:
        raise ApiError(
            409, f"run {run_id} is {info.status.value}, not failed: only failed runs can be retried"
        )
    _log.bind(run_id=run_id).info("run retried over HTTP")
    return status


async def replay(run_id: str) -> ReplayReport:
    """Replay ``run_id``'s log against the workflow code this process imports (no side effects).

    :func:`pyworkflow.client.check_replay` (synchronous: it runs in a worker
    thread, which enters the runtime's loop as any synchronous caller does).
    404 when there is no such run or its workflow is not registered here, 409
    when its data cannot be read here (a serializer this process lacks).
    """
    try:
        return await anyio.to_thread.run_sync(client.check_replay, run_id)
    except (RunNotFoundError, ValueError, TypeError):
        raise _no_run(run_id) from None
    except WorkflowNotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except (CorruptDataError, SerializationError) as exc:
        raise ApiError(409, f"run {run_id} cannot be replayed here: {exc}") from None


def replay_json(report: ReplayReport) -> dict[str, Any]:
    """The report as JSON, the shape of ``pyworkflow runs replay --json``."""
    data: dict[str, Any] = jsonable(report)
    return data


def hook_token(events: Sequence[Event], correlation_id: str) -> str | None:
    """The token of the hook ``correlation_id`` while the log shows it live, else None."""
    token: str | None = None
    for event in events:
        if event.correlation_id != correlation_id:
            continue
        if event.type == EventType.HOOK_CREATED:
            value = event.payload.get("token")
            token = value if isinstance(value, str) else None
        elif event.type == EventType.HOOK_DISPOSED:
            token = None
    return token


def live_hook_ids(events: Sequence[Event]) -> list[str]:
    """The correlation ids of the hooks the log shows live (created, not disposed), in order."""
    live: dict[str, None] = {}
    for event in events:
        if event.correlation_id is None:
            continue
        if event.type == EventType.HOOK_CREATED:
            live[event.correlation_id] = None
        elif event.type == EventType.HOOK_DISPOSED:
            live.pop(event.correlation_id, None)
    return list(live)


async def resume(run_id: str, correlation_id: str, payload: Any) -> str:
    """Send ``payload`` to the live hook ``correlation_id`` of run ``run_id``; the run's id.

    :func:`pyworkflow.client.aresume_hook` with the hook's token. 404 when
    there is no such run or the run never created that hook, 409 when the
    hook is no longer live, 422 when the payload does not fit its schema
    (``errors`` lists the fields) or cannot be recorded, 413 when too large.
    """
    events = await _events(run_id)
    if not any(
        e.type == EventType.HOOK_CREATED and e.correlation_id == correlation_id for e in events
    ):
        raise ApiError(404, f"run {run_id} has no hook {correlation_id!r}")
    token = hook_token(events, correlation_id)
    gone = ApiError(409, f"hook {correlation_id!r} of run {run_id} is no longer live")
    if token is None:
        raise gone
    try:
        hook = await client.aget_hook(token)
        if hook.run_id != run_id or hook.correlation_id != correlation_id:
            raise gone  # the token now names another run's hook
        resumed = await client.aresume_hook(token, payload)
    except HookNotFoundError:
        raise gone from None
    except PayloadValidationError as exc:
        raise ApiError(422, str(exc), list(exc.errors)) from None
    except PayloadTooLargeError as exc:
        raise ApiError(413, str(exc)) from None
    except (SerializationError, RecursionError) as exc:
        raise ApiError(422, f"payload cannot be recorded: {exc}") from None
    _log.bind(run_id=run_id, correlation_id=correlation_id).info("hook resumed over HTTP")
    return resumed


def action_routes(api: Callable[[Handler], Handler], max_body: Callable[[], int]) -> list[Route]:
    """The routes, each wrapped in ``api`` (bearer token, JSON content type); ``max_body()``
    caps request bodies."""

    async def retry_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await _empty_body(request, max_body())
        status = await retry(run_id)
        return JsonResponse({"run_id": run_id, "status": status.value}, status_code=202)

    async def replay_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await _empty_body(request, max_body())
        return JsonResponse(replay_json(await replay(run_id)))

    async def resume_hook(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        correlation_id = request.path_params["correlation_id"]
        payload = parse_json(await read_body(request, max_body()), empty_is_null=True)
        resumed = await resume(run_id, correlation_id, payload)
        return JsonResponse({"run_id": resumed}, status_code=202)

    return [
        Route("/api/runs/{run_id}/retry", api(retry_run), methods=["POST"]),
        Route("/api/runs/{run_id}/replay", api(replay_run), methods=["POST"]),
        Route(
            "/api/runs/{run_id}/hooks/{correlation_id}/resume",
            api(resume_hook),
            methods=["POST"],
        ),
    ]
