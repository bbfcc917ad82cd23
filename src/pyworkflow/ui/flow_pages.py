"""The schedules and queues pages of the UI (read-only tables over the same APIs as the CLI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pyworkflow.flowshape import ADMITTED_WINDOW, queues_json, schedule_input
from pyworkflow.runtime import get_runtime
from pyworkflow.schedules import alist_schedules
from pyworkflow.server.options import ServerOptions
from pyworkflow.ui import auth
from pyworkflow.ui.app import render

__all__ = ["flow_routes"]


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


def flow_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """``/ui/schedules`` and ``/ui/queues``."""
    return [
        Route("/ui/schedules", auth.guard(_schedules, options), methods=["GET", "HEAD"]),
        Route("/ui/queues", auth.guard(_queues, options), methods=["GET", "HEAD"]),
    ]
