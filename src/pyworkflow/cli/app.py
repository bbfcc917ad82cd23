"""The Typer application and the ``worker`` command."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Annotated

import typer

app = typer.Typer(name="pyworkflow", help="Durable, event-sourced workflows.", no_args_is_help=True)


@app.callback()
def _root(
    storage: Annotated[
        str | None, typer.Option(help="Storage URL (overrides config key 'storage').")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level of pyworkflow's logs.")] = "INFO",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
) -> None:
    """Options shared by every command."""
    import pyworkflow

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    pyworkflow.enable_logging(log_level, json=json_logs)
    if storage is not None:
        pyworkflow.configure(storage=storage)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Activations at once (default: config worker_concurrency).")
    ] = None,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Workflow module to import.")
    ] = None,
) -> None:
    """Run a long-lived worker: activate due runs, fire timers, recover expired leases."""
    from pyworkflow.executors.local import Worker, import_modules
    from pyworkflow.runtime import configure, get_runtime

    settings = configure(embedded_worker=False)
    import_modules(list(settings.modules) + list(module or []))
    runtime = get_runtime()
    the_worker = Worker(runtime, concurrency=concurrency)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        the_worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime.call(the_worker.run)
    runtime.shutdown()


def main() -> None:
    """Entry point of the ``pyworkflow`` console script."""
    app()
