"""The schedules and queues pages of the UI: tables over the same APIs as the CLI.

A schedule can be paused, resumed or triggered from its row (POST forms with
csrf, confirmed first; 303 back with a flash message).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from pyworkflow.errors import PyWorkflowError
from pyworkflow.flowshape import ADMITTED_WINDOW, queues_json, schedule_input
from pyworkflow.runtime import get_runtime
from pyworkflow.schedules import (
    alist_schedules,
    apause_schedule,
    aresume_schedule,
    atrigger_schedule,
)
from pyworkflow.server.options import ServerOptions
from pyworkflow.ui import auth
from pyworkflow.ui.app import flash, render

__all__ = ["flow_routes"]

_log = logger.bind(component="ui")


def _input_text(args: Any, kwargs: Any) -> str:
    """A schedule's run input as compact JSON (``args``, then ``kwargs``), or ``""``."""
    if args is None and kwargs is None:
        return ""
    parts = [json.dumps(a, ensure_ascii=False) for a in args or ()]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (kwargs or {}).items()]
    return ", ".join(parts)


async def _schedules(request: Request) -> Response:
    runtime = get_runtime()
    rows = []
    for schedule in sorted(await alist_schedules(), key=lambda s: s.name):
        args, kwargs = schedule_input(runtime, schedule)
        rows.append({"schedule": schedule, "input": _input_text(args, kwargs)})
    return render(request, "schedules.html", {"rows": rows})


async def _queues(request: Request) -> Response:
    runtime = get_runtime()
    rows = await runtime.acall(queues_json, runtime)
    window = int(ADMITTED_WINDOW.total_seconds())
    return render(request, "queues.html", {"rows": rows, "window": window})


def _message(exc: PyWorkflowError) -> str:
    """An error's text (a ``KeyError`` subclass's ``str()`` would quote it)."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


def _schedule_action(action: str) -> Callable[[Request], Awaitable[Response]]:
    """The POST handler of one action (pause, resume, trigger) of a schedule's row."""

    async def act(request: Request) -> Response:
        name = str(request.path_params["name"])
        root = auth.root_path(request)
        back = RedirectResponse(f"{root}/ui/schedules", status_code=303)
        log = _log.bind(schedule=name, action=action)
        try:
            if action == "pause":
                await apause_schedule(name)
                message = f"Schedule {name} paused"
            elif action == "resume":
                await aresume_schedule(name)
                message = f"Schedule {name} resumed"
            else:
                run_id = await atrigger_schedule(name)
                message = f"Schedule {name} triggered: run {run_id} started"
        except PyWorkflowError as exc:
            log.info("UI schedule action refused: {}", exc)
            text = f"Could not {action} schedule {name}: {_message(exc)}"
            return flash(back, text, "error", root=root)
        log.info("schedule action from the UI")
        return flash(back, message, root=root)

    return act


def flow_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """``/ui/schedules`` (and its pause/resume/trigger forms) and ``/ui/queues``."""
    return [
        Route("/ui/schedules", auth.guard(_schedules, options), methods=["GET", "HEAD"]),
        *(
            Route(
                f"/ui/schedules/{{name}}/{action}",
                auth.guard(_schedule_action(action), options),
                methods=["POST"],
            )
            for action in ("pause", "resume", "trigger")
        ),
        Route("/ui/queues", auth.guard(_queues, options), methods=["GET", "HEAD"]),
    ]
