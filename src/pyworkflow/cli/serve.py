"""``pyworkflow serve``: run the HTTP server (hooks and the JSON API) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app


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
        typer.Option(
            help="Bearer token required on /api/* (default: server.api_token); at least "
            "16 characters, never empty.",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Allow serving the API on a non-loopback address without an API token "
            "(only behind something that authenticates requests).",
        ),
    ] = False,
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
    from pyworkflow.server import check_bind, create_app
    from pyworkflow.server.options import check_token, server_options

    settings = configure(embedded_worker=worker)
    options = server_options(settings)
    token = options.api_token if api_token is None else check_token(api_token, "--api-token")
    bind_host = host if host is not None else options.host
    bind_port = port if port is not None else options.port
    check_bind(bind_host, token, insecure_no_auth=insecure_no_auth or options.insecure_no_auth)
    import_modules(list(settings.modules) + list(module or []))
    app_instance = create_app(api_token=token)
    get_runtime()  # open storage (and start the worker) before the first request
    render.err_console.print(f"serving PyWorkflow on http://{bind_host}:{bind_port}")
    try:
        uvicorn.run(
            app_instance,
            host=bind_host,
            port=bind_port,
            log_level="warning",
        )
    finally:
        from pyworkflow.runtime import shutdown

        shutdown()
