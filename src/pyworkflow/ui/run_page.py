"""The run page (``/ui/runs/{run_id}``): detail, timeline, events, live updates, actions."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute

from pyworkflow.server.options import ServerOptions

__all__ = ["run_routes"]


def run_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """The run page's routes; ``options()`` gives the server's options (API token...)."""
    return []
