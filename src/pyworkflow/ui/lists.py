"""The list pages of the UI: runs, workflows, schedules, queues."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute

from pyworkflow.server.options import ServerOptions

__all__ = ["list_routes"]


def list_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """The routes of the list pages (``/ui/runs``, ``/ui/workflows``...)."""
    return []
