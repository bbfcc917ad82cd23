"""The ASGI app: ``POST /hooks/{token}``, a JSON API over runs and schedules, ``/openapi.json``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyworkflow import client
from pyworkflow.errors import (
    ConfigError,
    HookNotFoundError,
    PayloadTooLargeError,
    PayloadValidationError,
    RunNotFoundError,
    SerializationError,
    WorkflowNotFoundError,
)
from pyworkflow.jsonshape import children_json, event_json, run_json, started_children
from pyworkflow.models import RunStatus
from pyworkflow.server.actions_api import action_routes
from pyworkflow.server.metrics_route import metrics_routes
from pyworkflow.server.openapi import openapi_document
from pyworkflow.server.options import (
    DEFAULT_MAX_BODY_BYTES,
    ServerOptions,
    check_origin,
    check_token,
    server_options,
)
from pyworkflow.server.schedules_api import check_flow_fields, schedule_routes
from pyworkflow.server.signing import DELIVERY_HEADER, SIGNATURE_HEADER, SignatureError, verify
from pyworkflow.server.streams_api import stream_routes
from pyworkflow.server.wire import (
    MAX_JSON_DEPTH,
    ApiError,
    JsonResponse,
    parse_json,
    read_body,
    require_json,
)
from pyworkflow.workflow import get_workflow

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "SIGNATURE_HEADER",
    "create_app",
]

#: How many children ``GET /api/runs/{run_id}`` lists (newest first); the rest: ``?parent=``.
CHILDREN_SHOWN = 500

#: Most runs ``GET /api/runs`` returns in one page.
MAX_PAGE = 500

#: The fields of ``POST /api/runs``.
START_FIELDS = frozenset(
    {
        "workflow",
        "args",
        "kwargs",
        "idempotency_key",
        "queue",
        "priority",
        "partition_key",
        "dedup_key",
    }
)

_log = logger.bind(component="server")

Handler = Callable[[Request], Awaitable[Response]]


# ----- options -----


def _options(
    api_token: str | None,
    max_body_bytes: int | None,
    signature_tolerance: float | None,
) -> ServerOptions:
    """Explicit arguments win over ``[tool.pyworkflow.server]`` of the running settings."""
    configured = server_options()
    changes: dict[str, Any] = {}
    if api_token is not None:
        changes["api_token"] = api_token
    if max_body_bytes is not None:
        changes["max_body_bytes"] = max_body_bytes
    if signature_tolerance is not None:
        changes["signature_tolerance"] = signature_tolerance
    return attrs.evolve(configured, **changes)


def _check_limit(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{source} must be a positive integer, got {value!r}")
    return value


def _check_seconds(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{source} must be a positive number of seconds, got {value!r}")
    return float(value)


def _cancel_reason(body: Any) -> str:
    """The reason of ``POST /api/runs/{id}/cancel`` (an optional ``{"reason": str}``), or 422."""
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object (or empty)")
    errors = [f"{field}: unknown field" for field in sorted(set(body) - {"reason"})]
    reason = body.get("reason", "cancelled over HTTP")
    if not isinstance(reason, str) or len(reason) > 1000:
        errors.append("reason: must be a string of at most 1000 characters")
    if errors:
        raise ApiError(422, "invalid request body", errors)
    assert isinstance(reason, str)
    return reason


def _check_bearer(expected: str, header: str | None) -> None:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), expected.encode()
    ):
        raise ApiError(401, "missing or invalid bearer token")


def _query_limit(raw: str | None) -> int:
    if raw is None:
        return 50
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "query parameter 'limit' must be an integer") from None
    if not 1 <= value <= MAX_PAGE:
        raise ApiError(422, f"query parameter 'limit' must be between 1 and {MAX_PAGE}")
    return value


def _query_status(raw: str | None) -> RunStatus | None:
    if raw is None:
        return None
    try:
        return RunStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in RunStatus)
        raise ApiError(422, f"query parameter 'status' must be one of {allowed}") from None


def _check_arguments(name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """422 unless ``args``/``kwargs`` bind to the workflow's signature (WorkflowNotFoundError)."""
    try:
        get_workflow(name).check_arguments(args, kwargs)
    except TypeError as exc:
        raise ApiError(422, str(exc), [str(exc)]) from None


# ----- the app -----


def create_app(
    *,
    api_token: str | None = None,
    max_body_bytes: int | None = None,
    signature_tolerance: float | None = None,
    cors_origins: list[str] | tuple[str, ...] | None = None,
) -> Starlette:
    """The PyWorkflow HTTP server as a plain ASGI (Starlette) app.

    ``api_token`` requires ``Authorization: Bearer <token>`` on every
    ``/api/*`` route (an empty or short token is a ``ConfigError``, never
    "auth off"); ``max_body_bytes`` caps request bodies (413 past it);
    ``signature_tolerance`` is how many seconds a signed hook request's
    timestamp may be off (default 300); ``cors_origins`` lists the web
    origins allowed to call the server from a browser (CORS is off when
    empty). ``None`` takes each from ``[tool.pyworkflow.server]`` (read when
    a request comes in, except ``cors_origins``, read now if a runtime is
    configured). Mount it in your own app with
    ``Mount("/workflows", app=create_app())``.
    """
    if max_body_bytes is not None:
        _check_limit(max_body_bytes, "max_body_bytes")
    if api_token is not None:
        api_token = check_token(api_token, "api_token")
    if signature_tolerance is not None:
        signature_tolerance = _check_seconds(signature_tolerance, "signature_tolerance")
    origins: tuple[str, ...] = ()
    if cors_origins is not None:
        if isinstance(cors_origins, str) or not isinstance(cors_origins, list | tuple):
            raise ConfigError("cors_origins must be a list of origins")
        try:
            origins = tuple(check_origin(origin) for origin in cors_origins)
        except TypeError as exc:
            raise ConfigError(f"cors_origins must be {exc}") from None

    def options() -> ServerOptions:
        return _options(api_token, max_body_bytes, signature_tolerance)

    def api(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                opts = options()
                if opts.api_token is not None:
                    _check_bearer(opts.api_token, request.headers.get("authorization"))
                if request.method == "POST":
                    require_json(request)
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return guarded

    async def post_hook(request: Request) -> Response:
        token = request.path_params["token"]
        log = _log.bind(token=token)
        try:
            opts = options()
            require_json(request)
            body = await read_body(request, opts.max_body_bytes)
            try:
                hook = await client.aget_hook(token)
            except HookNotFoundError:
                raise ApiError(404, "no live hook with this token") from None
            log = log.bind(run_id=hook.run_id)
            keys: list[str] = []
            if hook.secret is not None:
                header = request.headers.get(SIGNATURE_HEADER)
                try:
                    signature = verify(
                        hook.secret, body, header, tolerance=opts.signature_tolerance
                    )
                except SignatureError as exc:
                    raise ApiError(401, str(exc)) from None
                keys.append(f"sig:{signature[:32]}")
            delivery = request.headers.get(DELIVERY_HEADER)
            if delivery is not None:
                try:
                    keys.append(client.check_delivery_id(delivery))
                except ValueError as exc:
                    raise ApiError(400, f"{DELIVERY_HEADER}: {exc}") from None
            payload = parse_json(body, empty_is_null=True)
            try:
                run_id = await client.adeliver_hook(token, payload, keys)
            except HookNotFoundError:
                raise ApiError(404, "no live hook with this token") from None
            except PayloadValidationError as exc:
                raise ApiError(422, str(exc), list(exc.errors)) from None
            except PayloadTooLargeError as exc:
                raise ApiError(413, str(exc)) from None
            except (SerializationError, RecursionError) as exc:
                raise ApiError(422, f"payload cannot be recorded: {exc}") from None
        except ApiError as exc:
            log.bind(status=exc.status).info("hook request rejected: {}", exc.detail)
            return exc.response()
        log.bind(run_id=run_id).info("hook payload recorded")
        return JsonResponse({"run_id": run_id}, status_code=202)

    async def list_runs(request: Request) -> Response:
        query = request.query_params
        status = _query_status(query.get("status"))
        limit = _query_limit(query.get("limit"))
        try:
            page = await client.alist_runs(
                status=status,
                workflow=query.get("workflow"),
                limit=limit,
                cursor=query.get("cursor") or None,
                parent=query.get("parent") or None,
            )
        except ValueError as exc:
            raise ApiError(422, f"query parameter 'cursor' is invalid: {exc}") from None
        runs = [run_json(client.run_info(run)) for run in page.runs]
        return JsonResponse({"runs": runs, "next_cursor": page.next_cursor})

    async def get_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            info = await client.aget_run(run_id)
            events = await client.aget_events(run_id)
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None
        data = run_json(info, events)
        if started_children(events):
            page = await client.alist_runs(parent=run_id, limit=CHILDREN_SHOWN)
            data["children"] = children_json(events, page.runs)
        return JsonResponse(data)

    async def get_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            await client.aget_run(run_id)
            events = await client.aget_events(run_id)
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None
        return JsonResponse({"events": [event_json(e) for e in events]})

    async def start_run(request: Request) -> Response:
        body = parse_json(await read_body(request, options().max_body_bytes))
        if not isinstance(body, dict):
            raise ApiError(422, "request body must be a JSON object")
        errors: list[str] = []
        name = body.get("workflow")
        args = body.get("args", [])
        kwargs = body.get("kwargs", {})
        key = body.get("idempotency_key")
        if not isinstance(name, str) or not name:
            errors.append("workflow: required, a non-empty string")
        if not isinstance(args, list):
            errors.append("args: must be an array")
        if not isinstance(kwargs, dict):
            errors.append("kwargs: must be an object")
        if key is not None and not isinstance(key, str):
            errors.append("idempotency_key: must be a string")
        errors.extend(check_flow_fields(body))
        extra = sorted(set(body) - START_FIELDS)
        errors.extend(f"{field}: unknown field" for field in extra)
        if errors:
            raise ApiError(422, "invalid request body", errors)
        assert isinstance(name, str)
        try:
            _check_arguments(name, args, kwargs)
            run_id = await client.astart_workflow(
                name,
                args,
                kwargs,
                idempotency_key=key,
                queue=body.get("queue"),
                priority=body.get("priority", 0),
                partition_key=body.get("partition_key"),
                dedup_key=body.get("dedup_key"),
            )
        except WorkflowNotFoundError as exc:
            raise ApiError(404, str(exc)) from None
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc)) from None
        except (SerializationError, RecursionError) as exc:
            raise ApiError(422, f"arguments cannot be recorded: {exc}") from None
        _log.bind(run_id=run_id, workflow=name).info("run started over HTTP")
        return JsonResponse({"run_id": run_id}, status_code=201)

    async def cancel_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        raw = await read_body(request, options().max_body_bytes)
        reason = _cancel_reason(parse_json(raw) if raw.strip() else {})
        try:
            cancelled = await client.acancel(run_id, reason)
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None
        _log.bind(run_id=run_id).info("cancel requested over HTTP: {}", cancelled)
        return JsonResponse({"cancelled": cancelled}, status_code=202)

    async def runs(request: Request) -> Response:
        return await (start_run if request.method == "POST" else list_runs)(request)

    async def openapi(request: Request) -> Response:
        try:
            secured = options().api_token is not None
        except ConfigError as exc:
            return ApiError(500, f"server misconfigured: {exc}").response()
        root_path = str(request.scope.get("root_path", ""))
        return JsonResponse(openapi_document(secured=secured, root_path=root_path))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JsonResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    from pyworkflow.ui import ui_routes  # here: pyworkflow.ui imports server modules

    routes = [
        Route("/hooks/{token:path}", post_hook, methods=["POST"]),
        Route("/api/runs", api(runs), methods=["GET", "POST"]),
        Route("/api/runs/{run_id}", api(get_run), methods=["GET"]),
        Route("/api/runs/{run_id}/events", api(get_events), methods=["GET"]),
        Route("/api/runs/{run_id}/cancel", api(cancel_run), methods=["POST"]),
        *action_routes(api, lambda: options().max_body_bytes),
        *schedule_routes(api, lambda: options().max_body_bytes),
        Route("/openapi.json", openapi, methods=["GET"]),
        *metrics_routes(api),  # GET /metrics when metrics are on (docs/observability.md)
        *stream_routes(api),  # GET /api/runs/{run_id}/streams/{name}: SSE (docs/streams.md)
        *ui_routes(options),
    ]
    if cors_origins is None:
        origins = _configured_origins()
    middleware = []
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type", SIGNATURE_HEADER, DELIVERY_HEADER],
                max_age=600,
            )
        )
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error}
    )
    app.router.redirect_slashes = False
    return app


def _configured_origins() -> tuple[str, ...]:
    """``server.cors_origins`` of the current settings (without starting a runtime)."""
    from pyworkflow.runtime import current_settings

    return server_options(current_settings()).cors_origins
