"""Routes of the UI: the shell, login, list pages; the run page's come from ``run_page``."""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import BaseRoute

from pyworkflow.server.options import ServerOptions
from pyworkflow.ui.run_page import run_routes

__all__ = ["ui_routes"]


def ui_routes(options: Callable[[], ServerOptions]) -> list[BaseRoute]:
    """Every route of the UI (``/``, ``/ui/...``); ``options()`` gives the server's options."""
    return [*run_routes(options)]
