"""The Typer application: shared options, error handling, and the top-level commands."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Annotated, Any

import typer

from pyworkflow.cli import render

app = typer.Typer(
    name="pyworkflow",
    help="Durable, event-sourced workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _root(
    storage: Annotated[
        str | None, typer.Option(help="Storage URL (overrides config key 'storage').")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Level of pyworkflow's logs on stderr.")] = (
        "WARNING"
    ),
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Options shared by every command."""
    import pyworkflow

    _state["debug"] = debug
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    pyworkflow.enable_logging(log_level.upper(), json=json_logs)
    # commands only inspect runs; `run` and `runs retry` turn the worker back on
    overrides: dict[str, Any] = {"embedded_worker": False}
    if storage is not None:
        overrides["storage"] = storage
    pyworkflow.configure(**overrides)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Activations at once (default: config worker_concurrency).")
    ] = None,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Workflow module to import.")
    ] = None,
) -> None:
    """Run a long-lived worker: activate due runs, fire timers, recover expired leases.

    SIGINT/SIGTERM stop it cleanly: no new claims; in-flight activations get
    ``drain_timeout`` seconds, then are left for recovery (never half-recorded).
    """
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


def load_target(spec: str) -> Any:
    """``module:attribute`` -> the workflow object it names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise typer.BadParameter(f"expected MODULE:WORKFLOW, got {spec!r}")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise typer.BadParameter(f"module {module_name!r} has no {attribute!r}") from None


def parse_args(raw: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """``1 '"x"' name=ana n=3`` -> positional JSON values and key=value keywords."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in raw:
        key, eq, value = item.partition("=")
        if eq and key.isidentifier():
            kwargs[key] = _json_or_text(value)
        else:
            args.append(_json_or_text(item))
    return args, kwargs


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="MODULE:WORKFLOW to start.")],
    arguments: Annotated[
        list[str] | None, typer.Argument(help="Arguments: JSON values or key=value.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the run ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Start a run; with --wait, follow it live and exit non-zero if it fails."""
    import pyworkflow
    from pyworkflow.models import RunStatus

    pyworkflow.configure(embedded_worker=True)
    workflow = load_target(target)
    args, kwargs = parse_args(arguments or [])
    run_id = pyworkflow.start_workflow(workflow, args, kwargs)
    if not wait:
        if as_json:
            render.print_json({"run_id": run_id})
        else:
            render.console.print(f"started run [bold]{run_id}[/]")
        return
    if not as_json:
        render.console.print(f"started run [bold]{run_id}[/]; following it (Ctrl-C to stop)")
    shown = 0
    while True:
        events = pyworkflow.get_events(run_id)
        for event in events[shown:]:
            if not as_json:
                stamp = event.timestamp.strftime("%H:%M:%S.%f")[:-3]
                render.console.print(f"{stamp}  {render.event_line(event)}")
        shown = len(events)
        info = pyworkflow.get_run(run_id)
        if info.status.is_terminal:
            break
        time.sleep(0.1)
    if as_json:
        render.print_json(
            {"run_id": run_id, "status": info.status.value, "error": info.error_message}
        )
    else:
        style = render.STATUS_STYLE[info.status]
        render.console.print(f"run {run_id} [{style}]{info.status.value}[/]")
        if info.status == RunStatus.COMPLETED:
            render.console.print(f"result: {info.result!r}")
        elif info.error_message:
            render.console.print(f"error: {info.error_message}")
    if info.status != RunStatus.COMPLETED:
        raise typer.Exit(1)


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Installed plugins and what each provides."""
    from pyworkflow.plugins import list_plugins

    infos = list_plugins()
    if as_json:
        render.print_json(
            [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "storage_schemes": list(p.storage_schemes),
                    "executors": list(p.executors),
                    "serializers": list(p.serializers),
                }
                for p in infos
            ]
        )
        return
    from rich.table import Table

    table = Table("plugin", "distribution", "storage", "executors", "serializers")
    for p in infos:
        dist = f"{p.distribution} {p.version}" if p.distribution else ""
        table.add_row(
            p.name,
            dist,
            ", ".join(p.storage_schemes),
            ", ".join(p.executors),
            ", ".join(p.serializers),
        )
    render.console.print(table)


@app.command()
def config(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The effective configuration and where each value came from (secrets shown as ***).

    Plugin options follow the core keys as ``<table>.<option>``.
    """
    from pyworkflow.config import KEYS
    from pyworkflow.redaction import redact_settings
    from pyworkflow.runtime import current_settings

    settings = current_settings()
    values = redact_settings({key: getattr(settings, key) for key in KEYS})
    tables = redact_settings(settings.plugin_tables)
    rows = [(key, values[key], settings.source_of(key)) for key in KEYS]
    for table in sorted(tables):
        for option in sorted(tables[table]):
            key = f"{table}.{option}"
            rows.append((key, tables[table][option], settings.source_of(key)))
    if as_json:
        render.print_json({k: {"value": v, "source": s} for k, v, s in rows})
        return
    from rich.table import Table

    table = Table("key", "value", "source")
    for key, value, source in rows:
        table.add_row(key, repr(value), source)
    render.console.print(table)


def main() -> None:
    """Entry point of the ``pyworkflow`` console script: one-line errors unless --debug."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        render.err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        import click

        from pyworkflow.redaction import redact_text

        if isinstance(exc, click.ClickException):
            exc.message = redact_text(exc.message)
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"]:
            raise
        message = redact_text(str(exc))
        render.err_console.print(f"error: {message}", markup=False, highlight=False)
        sys.exit(1)


from pyworkflow.cli import serve as _serve  # noqa: E402, F401  (registers `serve`)
