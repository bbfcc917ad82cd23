"""The ASGI app: ``POST /hooks/{token}``, a JSON API over runs, and ``/openapi.json``."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import attrs
import cattrs.preconf.json
from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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
from pyworkflow.models import Event, RunStatus
from pyworkflow.runtime import get_runtime
from pyworkflow.server.openapi import openapi_document
from pyworkflow.workflow import get_workflow

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "SIGNATURE_HEADER",
    "create_app",
    "jsonable",
    "sign",
]

#: Largest request body accepted when ``server.max_body_bytes`` is not set (1 MiB).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Header carrying ``sha256=<hex HMAC-SHA256(secret, raw body)>`` for hooks with a secret.
SIGNATURE_HEADER = "X-PyWorkflow-Signature"
#: JSON bodies nested deeper than this are rejected with 400.
MAX_JSON_DEPTH = 64
#: Most runs ``GET /api/runs`` returns in one page.
MAX_PAGE = 500

_log = logger.bind(component="server")
_converter = cattrs.preconf.json.make_converter()

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """A client error turned into a JSON response ``{"detail": ..., ["errors": [...]]}``."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def sign(secret: str, body: bytes) -> str:
    """The ``X-PyWorkflow-Signature`` value for ``body`` under a hook's ``secret``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible data (attrs classes, datetimes, ...); else its ``str()``."""
    try:
        data = _converter.unstructure(value)
        json.dumps(data, allow_nan=False)
    except Exception:
        return str(value)
    return data


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def run_json(info: client.RunInfo) -> dict[str, Any]:
    """The JSON form of a run (the ``Run`` schema of the OpenAPI document)."""
    return {
        "run_id": info.run_id,
        "workflow": info.workflow,
        "status": info.status.value,
        "created_at": _iso(info.created_at),
        "updated_at": _iso(info.updated_at),
        "completed_at": _iso(info.completed_at),
        "result": jsonable(info.result),
        "error_message": info.error_message,
        "wake_at": _iso(info.wake_at),
    }


def event_json(event: Event) -> dict[str, Any]:
    """The JSON form of an event (the ``Event`` schema of the OpenAPI document)."""
    payload = jsonable(dict(event.payload))
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "type": event.type.value,
        "correlation_id": event.correlation_id,
        "timestamp": event.timestamp.isoformat(),
        "payload": payload if isinstance(payload, dict) else {"value": payload},
    }


# ----- options -----


@attrs.frozen
class _Options:
    api_token: str | None
    max_body_bytes: int


def _check_limit(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{source} must be a positive integer, got {value!r}")
    return value


def _check_token(value: Any, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{source} must be a string, got {value!r}")
    return value or None


def _options(api_token: str | None, max_body_bytes: int | None) -> _Options:
    """Explicit arguments win over ``[tool.pyworkflow.server]`` of the running settings."""
    table: Mapping[str, Any] = get_runtime().settings.plugin_tables.get("server", {})
    token = (
        api_token
        if api_token is not None
        else _check_token(table.get("api_token"), "config key 'server.api_token'")
    )
    limit = (
        max_body_bytes
        if max_body_bytes is not None
        else _check_limit(
            table.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES),
            "config key 'server.max_body_bytes'",
        )
    )
    return _Options(api_token=token or None, max_body_bytes=limit)


# ----- request helpers -----


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 once it is (announced or found to be) over ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            announced = int(length)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if announced > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def _parse_json(body: bytes, *, empty_is_null: bool = False) -> Any:
    """Strict JSON (no NaN/Infinity, at most ``MAX_JSON_DEPTH`` deep), else 400."""
    if not body.strip():
        if empty_is_null:
            return None
        raise ApiError(400, "request body must be JSON (it is empty)")
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ApiError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _check_signature(secret: str, body: bytes, header: str | None) -> None:
    if header is None:
        raise ApiError(401, f"missing {SIGNATURE_HEADER} header")
    given = header.strip()
    if given.lower().startswith("sha256="):
        given = given[len("sha256=") :]
    expected = sign(secret, body)[len("sha256=") :]
    if not hmac.compare_digest(given.lower().encode(), expected.encode()):
        raise ApiError(401, f"invalid {SIGNATURE_HEADER} signature")


def _check_bearer(expected: str, header: str | None) -> None:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
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
    body = get_workflow(name).make_body()
    try:
        signature = inspect.signature(body)
    except (TypeError, ValueError):  # no introspectable signature: let the run decide
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ApiError(422, f"arguments do not fit workflow {name!r}: {exc}", [str(exc)]) from None


# ----- the app -----


def create_app(*, api_token: str | None = None, max_body_bytes: int | None = None) -> Starlette:
    """The PyWorkflow HTTP server as a plain ASGI (Starlette) app.

    ``api_token`` requires ``Authorization: Bearer <token>`` on every
    ``/api/*`` route; ``max_body_bytes`` caps request bodies (413 past it).
    ``None`` takes each from ``[tool.pyworkflow.server]`` (``api_token``,
    ``max_body_bytes``, default 1 MiB) when a request comes in. Mount it in
    your own app with ``Mount("/workflows", app=create_app())``.
    """
    if max_body_bytes is not None:
        _check_limit(max_body_bytes, "max_body_bytes")
    if api_token is not None:
        _check_token(api_token, "api_token")

    def options() -> _Options:
        return _options(api_token, max_body_bytes)

    def api(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                opts = options()
                if opts.api_token is not None:
                    _check_bearer(opts.api_token, request.headers.get("authorization"))
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return guarded

    async def post_hook(request: Request) -> Response:
        token = request.path_params["token"]
        log = _log.bind(token=token)
        try:
            body = await _read_body(request, options().max_body_bytes)
            try:
                hook = await client.aget_hook(token)
            except HookNotFoundError:
                raise ApiError(404, "no live hook with this token") from None
            log = log.bind(run_id=hook.run_id)
            if hook.secret is not None:
                _check_signature(hook.secret, body, request.headers.get(SIGNATURE_HEADER))
            payload = _parse_json(body, empty_is_null=True)
            try:
                run_id = await client.aresume_hook(token, payload)
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
        return JSONResponse({"run_id": run_id}, status_code=202)

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
            )
        except ValueError as exc:
            raise ApiError(422, f"query parameter 'cursor' is invalid: {exc}") from None
        runs = [run_json(client._info(get_runtime(), run)) for run in page.runs]
        return JSONResponse({"runs": runs, "next_cursor": page.next_cursor})

    async def get_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            info = await client.aget_run(run_id)
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None
        return JSONResponse(run_json(info))

    async def get_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            await client.aget_run(run_id)
            events = await client.aget_events(run_id)
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None
        return JSONResponse({"events": [event_json(e) for e in events]})

    async def start_run(request: Request) -> Response:
        body = _parse_json(await _read_body(request, options().max_body_bytes))
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
        extra = sorted(set(body) - {"workflow", "args", "kwargs", "idempotency_key"})
        errors.extend(f"{field}: unknown field" for field in extra)
        if errors:
            raise ApiError(422, "invalid request body", errors)
        assert isinstance(name, str)
        try:
            _check_arguments(name, args, kwargs)
            run_id = await client.astart_workflow(name, args, kwargs, idempotency_key=key)
        except WorkflowNotFoundError as exc:
            raise ApiError(404, str(exc)) from None
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc)) from None
        except (SerializationError, RecursionError) as exc:
            raise ApiError(422, f"arguments cannot be recorded: {exc}") from None
        _log.bind(run_id=run_id, workflow=name).info("run started over HTTP")
        return JSONResponse({"run_id": run_id}, status_code=201)

    async def cancel_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            cancelled = await client.acancel(run_id, "cancelled over HTTP")
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None
        _log.bind(run_id=run_id).info("cancel requested over HTTP: {}", cancelled)
        return JSONResponse({"cancelled": cancelled}, status_code=202)

    async def runs(request: Request) -> Response:
        return await (start_run if request.method == "POST" else list_runs)(request)

    async def openapi(request: Request) -> Response:
        secured = options().api_token is not None
        root_path = str(request.scope.get("root_path", ""))
        return JSONResponse(openapi_document(secured=secured, root_path=root_path))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    routes = [
        Route("/hooks/{token:path}", post_hook, methods=["POST"]),
        Route("/api/runs", api(runs), methods=["GET", "POST"]),
        Route("/api/runs/{run_id}", api(get_run), methods=["GET"]),
        Route("/api/runs/{run_id}/events", api(get_events), methods=["GET"]),
        Route("/api/runs/{run_id}/cancel", api(cancel_run), methods=["POST"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.router.redirect_slashes = False
    return app
