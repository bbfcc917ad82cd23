"""``pyworkflow serve``: run the HTTP server (hooks and the JSON API) under uvicorn."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: server.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: server.port, 8000).")
    ] = None,
    api_token: Annotated[
        str | None,
        typer.Option(help="Bearer token required on /api/* (default: server.api_token)."),
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also run workflows in this process (--no-worker: leave them to "
            "`pyworkflow worker` processes).",
        ),
    ] = True,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Workflow module to import.")
    ] = None,
) -> None:
    """Serve POST /hooks/{token}, the JSON API under /api and /openapi.json."""
    import uvicorn

    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import configure, get_runtime
    from pyworkflow.server import create_app

    settings = configure(embedded_worker=worker)
    import_modules(list(settings.modules) + list(module or []))
    table: dict[str, Any] = dict(settings.plugin_tables.get("server", {}))
    bind_host = host if host is not None else str(table.get("host", DEFAULT_HOST))
    bind_port = port if port is not None else int(table.get("port", DEFAULT_PORT))
    get_runtime()  # open storage (and start the worker) before the first request
    render.err_console.print(f"serving PyWorkflow on http://{bind_host}:{bind_port}")
    try:
        uvicorn.run(
            create_app(api_token=api_token),
            host=bind_host,
            port=bind_port,
            log_level="warning",
        )
    finally:
        from pyworkflow.runtime import shutdown

        shutdown()
