"""``GET /metrics``: this process's Prometheus metrics, when metrics are on.

The route exists only when ``[tool.pyworkflow.metrics] enabled = true`` in the
settings the app is made with (off: no route, 404). It is guarded like
``/api/*``: with an API token configured, a scrape must send
``Authorization: Bearer <token>`` (Prometheus: ``authorization.credentials``).
The exposition is rendered on a worker thread, because the storage gauges
(queue depth, schedule lag) are read through the runtime's loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["METRICS_PATH", "metrics_routes"]

#: Where the server exposes the metrics.
METRICS_PATH = "/metrics"

_Handler = Callable[[Request], Awaitable[Response]]


def metrics_routes(guard: Callable[[_Handler], _Handler]) -> list[Route]:
    """``[Route("/metrics")]`` guarded by ``guard`` when metrics are on, else ``[]``."""
    from pyworkflow.metrics import metrics_options
    from pyworkflow.runtime import current_settings

    if not metrics_options(current_settings()).enabled:
        return []

    async def metrics(request: Request) -> Response:
        from pyworkflow.metrics import render_metrics

        body, content_type = await anyio.to_thread.run_sync(render_metrics)
        return Response(body, media_type=None, headers={"Content-Type": content_type})

    return [Route(METRICS_PATH, guard(metrics), methods=["GET"])]
