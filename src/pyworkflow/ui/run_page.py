"""The run page (``/ui/runs/{run_id}``): detail, timeline, events, live updates, actions.

``GET /ui/runs/{run_id}`` renders the page. With ``X-Fragment: run-live`` it
answers the live region (status, result or error, related runs, timeline,
events) and with ``X-Fragment: run-actions`` the action forms, each with an
ETag (304 while unchanged); ``X-Live-Final: 1`` once the run has ended stops
ui.js polling. The actions (cancel, retry, check against code, resume a hook)
are POST forms that answer 303 back to the page with a flash message; retry,
replay and resume call the same functions as the JSON API
(:mod:`pyworkflow.server.actions_api`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import attrs
from loguru import logger
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pyworkflow import client
from pyworkflow.errors import (
    CorruptDataError,
    HookNotFoundError,
    RunNotFoundError,
    SerializationError,
    StepFailedError,
)
from pyworkflow.jsonshape import children_json, event_json, jsonable, started_children
from pyworkflow.models import Event, EventType, RunStatus, utcnow
from pyworkflow.runtime import get_runtime
from pyworkflow.server import actions_api
from pyworkflow.server.options import ServerOptions
from pyworkflow.server.wire import ApiError
from pyworkflow.ui import auth
from pyworkflow.ui.hook_form import FormError, FormField, payload_from_form, schema_fields
from pyworkflow.ui.timeline import Timeline, build_timeline

__all__ = [
    "ACTIONS_FRAGMENT",
    "LIVE_FRAGMENT",
    "ErrorView",
    "HookView",
    "error_view",
    "pretty_json",
    "run_routes",
]

#: The ``X-Fragment`` names of the page's live regions.
LIVE_FRAGMENT = "run-live"
ACTIONS_FRAGMENT = "run-actions"
#: How many children the page links (newest first).
CHILDREN_SHOWN = 500
#: How many events the table shows (the last ones); the JSON API has them all.
EVENTS_SHOWN = 2000
#: A live run's page is re-rendered at least this often (seconds): running bars grow.
LIVE_REDRAW = 5
#: Statuses whose runs can be cancelled / retried.
_CANCELLABLE = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED, RunStatus.QUEUED}
)
_PAYLOAD_KEYS = ("input", "result", "data", "error")

_log = logger.bind(component="ui")


# ----- what the page shows -----


def pretty_json(value: Any) -> str:
    """``value`` (made JSON-safe with :func:`~pyworkflow.jsonshape.jsonable`) as indented JSON."""
    data = jsonable(value)
    if isinstance(data, str) and data is not value and not isinstance(value, str):
        return data  # no JSON form: its str()
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False)


def _event_payload(event: Event) -> str:
    """An event's payload (as the JSON API shows it) as indented JSON.

    Serialized user values in it (``input``, ``result``, ``data``, ``error``) are
    JSON text themselves: shown parsed, so they read as structures, not
    escaped strings. Nothing is decoded into objects.
    """
    payload = dict(event_json(event)["payload"])
    for key in _PAYLOAD_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                payload[key] = json.loads(value)
            except (ValueError, RecursionError):
                pass
    try:
        return json.dumps(payload, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return json.dumps(event_json(event)["payload"], indent=2, ensure_ascii=False)


@attrs.frozen
class ErrorView:
    """A failed run's error: its type, message and the traceback where it was raised."""

    type: str
    message: str
    traceback: str | None


def error_view(info: client.RunInfo) -> ErrorView | None:
    """The decoded error of ``info`` (a failed run), or None when it has none."""
    error = info.error
    if error is None:
        if info.error_message is None:
            return None
        kind, _, message = info.error_message.partition(": ")
        return ErrorView(kind if message else "Error", message or kind, None)
    if isinstance(error, StepFailedError) and error.error_type:
        kind = error.error_type
        trace: str | None = error.traceback or None
    else:
        cls = type(error)
        kind = (
            cls.__qualname__
            if cls.__module__ == "builtins"
            else f"{cls.__module__}.{cls.__qualname__}"
        )
        trace = None
    trace = getattr(error, "__pyworkflow_traceback__", None) or trace
    return ErrorView(kind, str(error), trace if isinstance(trace, str) else None)


@attrs.frozen
class HookView:
    """A live hook of the run and how its form is built."""

    correlation_id: str
    name: str
    schema: str | None
    #: One input per field (an attrs schema), or None: a JSON textarea.
    fields: tuple[FormField, ...] | None


@attrs.frozen
class EventRow:
    """One row of the events table."""

    seq: int
    timestamp: Any
    delta_ms: float
    type: str
    correlation_id: str | None
    summary: str
    payload: str


def _event_rows(events: Sequence[Event]) -> list[EventRow]:
    from pyworkflow.cli.render import event_line

    rows: list[EventRow] = []
    previous = None
    for event in events:
        delta = (event.timestamp - previous).total_seconds() * 1000 if previous else 0.0
        previous = event.timestamp
        rows.append(
            EventRow(
                seq=event.seq,
                timestamp=event.timestamp,
                delta_ms=delta,
                type=event.type.value,
                correlation_id=event.correlation_id,
                summary=event_line(event),
                payload=_event_payload(event),
            )
        )
    return rows


async def _decoded_input(run_id: str) -> str:
    """The run's arguments, decoded with its serializer, as indented JSON (or why not)."""
    runtime = get_runtime()
    try:
        run = await runtime.acall(runtime.storage.get_run, run_id)
        value = runtime.serializer_for(run).loads(run.input)
    except (SerializationError, CorruptDataError) as exc:
        return f"(cannot be decoded here: {exc})"
    if isinstance(value, dict) and set(value) == {"args", "kwargs"}:
        value = {"args": list(value["args"]), "kwargs": value["kwargs"]}
    return pretty_json(value)


async def _hooks(events: Sequence[Event]) -> list[HookView]:
    names: dict[str, str] = {}
    for event in events:
        if event.type == EventType.HOOK_CREATED and event.correlation_id is not None:
            name = event.payload.get("name")
            names[event.correlation_id] = name if isinstance(name, str) else "hook"
    views = []
    for cid in actions_api.live_hook_ids(events):
        token = actions_api.hook_token(events, cid)
        schema: str | None = None
        if token is not None:
            try:
                schema = (await client.aget_hook(token)).schema
            except HookNotFoundError:
                continue  # disposed meanwhile
        views.append(HookView(cid, names.get(cid, "hook"), schema, schema_fields(schema)))
    return views


@attrs.frozen
class _Loaded:
    info: client.RunInfo
    events: list[Event]


async def _load(run_id: str) -> _Loaded | None:
    try:
        info = await client.aget_run(run_id)
        events = await client.aget_events(run_id)
    except (RunNotFoundError, ValueError, TypeError):
        return None
    return _Loaded(info, events)


def _live_state(info: client.RunInfo) -> str:
    """What the live region shows: the last seq and status (and the time, while it runs)."""
    terminal = info.status.is_terminal
    tick = "end" if terminal else str(int(time.time() // LIVE_REDRAW))
    return f"{info.run_id}|{info.last_seq}|{info.status.value}|{tick}"


def _actions_state(info: client.RunInfo, hooks: Sequence[HookView]) -> str:
    """What the action forms depend on: which actions the status allows, the live hooks.

    Not the status itself: a swap would clear what someone is typing into a hook's form.
    """
    allowed = f"{info.status in _CANCELLABLE}|{info.status == RunStatus.FAILED}"
    return f"{info.run_id}|{allowed}|" + ",".join(f"{h.correlation_id}:{h.schema}" for h in hooks)


async def _live_context(loaded: _Loaded) -> dict[str, Any]:
    info, events = loaded.info, loaded.events
    children: list[dict[str, Any]] = []
    if started_children(events):
        page = await client.alist_runs(parent=info.run_id, limit=CHILDREN_SHOWN)
        children = children_json(events, page.runs)
    timeline: Timeline = build_timeline(events, utcnow())
    shown = events[-EVENTS_SHOWN:]
    return {
        "run": info,
        "terminal": info.status.is_terminal,
        "result": pretty_json(info.result) if info.status == RunStatus.COMPLETED else None,
        "error": error_view(info) if info.status == RunStatus.FAILED else None,
        "children": children,
        "timeline": timeline,
        "events": _event_rows(shown),
        "events_total": len(events),
        "events_hidden": len(events) - len(shown),
        "run_path": _run_path(info.run_id),
    }


def _actions_context(info: client.RunInfo, hooks: Sequence[HookView]) -> dict[str, Any]:
    return {
        "run": info,
        "hooks": hooks,
        "can_cancel": info.status in _CANCELLABLE,
        "can_retry": info.status == RunStatus.FAILED,
        "run_path": _run_path(info.run_id),
    }


def _run_path(run_id: str) -> str:
    return f"/ui/runs/{quote(run_id, safe='')}"


# ----- routes -----


def _page() -> Callable[[Request], Any]:
    from pyworkflow.ui.app import fragment_etag, render, render_fragment

    async def page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        fragment = request.headers.get("x-fragment")
        if fragment not in (None, LIVE_FRAGMENT, ACTIONS_FRAGMENT):
            return PlainTextResponse(f"unknown fragment {fragment[:40]!r}", status_code=400)
        if fragment == LIVE_FRAGMENT:  # polled every second: 304 before reading the log
            try:
                state = _live_state(await client.aget_run(run_id))
            except (RunNotFoundError, ValueError, TypeError):
                return PlainTextResponse("no such run", status_code=404)
            if _unchanged(request, fragment_etag(state)):
                headers = {"ETag": fragment_etag(state), "Cache-Control": "no-cache"}
                return Response(status_code=304, headers={**headers, "Vary": "X-Fragment"})
        loaded = await _load(run_id)
        if loaded is None:
            if fragment is not None:
                return PlainTextResponse("no such run", status_code=404)
            return render(request, "run.html", {"missing": run_id}, status_code=404)
        info = loaded.info
        final = {"X-Live-Final": "1"} if info.status.is_terminal else {}
        if fragment == LIVE_FRAGMENT:
            response = render_fragment(
                request, "_run_live.html", await _live_context(loaded), _live_state(info)
            )
            response.headers.update(final)
            return response
        hooks = await _hooks(loaded.events)
        if fragment == ACTIONS_FRAGMENT:
            response = render_fragment(
                request,
                "_run_actions.html",
                _actions_context(info, hooks),
                _actions_state(info, hooks),
            )
            response.headers.update(final)
            return response
        context = {
            **await _live_context(loaded),
            **_actions_context(info, hooks),
            "input": await _decoded_input(run_id),
            "live_etag": fragment_etag(_live_state(info)),
            "actions_etag": fragment_etag(_actions_state(info, hooks)),
        }
        return render(request, "run.html", context)

    return page


def _unchanged(request: Request, etag: str) -> bool:
    """Whether the request's ``If-None-Match`` names ``etag``."""
    given = request.headers.get("if-none-match", "")
    return any(tag.strip() == etag for tag in given.split(","))


def _back(request: Request, run_id: str, message: str, kind: str = "ok") -> Response:
    """303 to the run page with ``message`` flashed."""
    from pyworkflow.ui.app import flash

    root = auth.root_path(request)
    return flash(
        RedirectResponse(f"{root}{_run_path(run_id)}", status_code=303), message, kind, root=root
    )


def _not_found(run_id: str) -> Response:
    return PlainTextResponse(f"no run {run_id[:200]!r}", status_code=404)


def _action(
    act: Callable[[Request, str], Any],
) -> Callable[[Request], Any]:
    """A POST handler: ``act(request, run_id)`` returns ``(message, kind)``; ApiError flashes."""

    async def handler(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if await _load(run_id) is None:
            return _not_found(run_id)
        log = _log.bind(run_id=run_id, action=request.url.path.rsplit("/", 1)[-1])
        try:
            message, kind = await act(request, run_id)
        except ApiError as exc:
            if exc.status == 404 and "no run" in exc.detail:
                return _not_found(run_id)
            log.info("UI action refused: {}", exc.detail)
            detail = exc.detail
            if exc.errors:
                detail += ": " + "; ".join(exc.errors)
            return _back(request, run_id, detail, "error")
        except FormError as exc:
            log.info("UI hook form refused: {}", exc)
            return _back(request, run_id, str(exc), "error")
        log.info("UI action: {}", message)
        return _back(request, run_id, message, kind)

    return handler


async def _cancel(request: Request, run_id: str) -> tuple[str, str]:
    try:
        cancelled = await client.acancel(run_id, "cancelled from the web UI")
    except RunNotFoundError:
        raise ApiError(404, f"no run {run_id!r}") from None
    if cancelled:
        return "Cancellation requested: the run is being cancelled.", "ok"
    return "The run had already ended: nothing to cancel.", "error"


async def _retry(request: Request, run_id: str) -> tuple[str, str]:
    status = await actions_api.retry(run_id)
    return f"Run retried from its failed step: now {status.value}.", "ok"


async def _replay(request: Request, run_id: str) -> tuple[str, str]:
    report = await actions_api.replay(run_id)
    if report.deterministic:
        return (
            f"Check against code: ok. The code now imported replays this run "
            f"({report.operations} recorded operations match).",
            "ok",
        )
    return (
        f"Check against code: NOT deterministic at operation {report.position}: the log has "
        f"{report.recorded}, the code now calls {report.called}. {report.message or ''}".strip(),
        "error",
    )


async def _resume(request: Request, run_id: str) -> tuple[str, str]:
    cid = request.path_params["correlation_id"]
    loaded = await _load(run_id)
    fields: tuple[FormField, ...] | None = None
    if loaded is not None:
        for hook in await _hooks(loaded.events):
            if hook.correlation_id == cid:
                fields = hook.fields
    form = auth.form_of(request)
    payload = payload_from_form(form, fields)
    await actions_api.resume(run_id, cid, payload)
    return f"Hook {cid} resumed: its payload is recorded and the run is scheduled.", "ok"


def run_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """The run page's routes; ``options()`` gives the server's options (API token...)."""

    def post(path: str, act: Callable[[Request, str], Any]) -> Route:
        return Route(path, auth.guard(_action(act), options), methods=["POST"])

    return [
        Route("/ui/runs/{run_id}", auth.guard(_page(), options), methods=["GET", "HEAD"]),
        post("/ui/runs/{run_id}/cancel", _cancel),
        post("/ui/runs/{run_id}/retry", _retry),
        post("/ui/runs/{run_id}/replay", _replay),
        post("/ui/runs/{run_id}/hooks/{correlation_id}/resume", _resume),
    ]
