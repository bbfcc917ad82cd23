"""The Typer application: shared options, error handling, and the top-level commands."""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, TypeVar

import typer
import typer.core
from typer.core import TyperArgument, TyperOption

from pyworkflow.cli import render

try:  # typer 0.2x carries its own copy of click; its commands raise its exceptions
    from typer._click import core as click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer runs on click itself
    from click import core as click  # type: ignore[no-redef]  # the same API, another module
    from click import exceptions as click_errors  # type: ignore[no-redef]  # likewise

F = TypeVar("F", bound=Callable[..., Any])


def _plain_flags(params: list[click.Parameter]) -> list[click.Parameter]:
    """Flags take no value: show no type for them in help (``--wait``, not ``--wait <bool>``)."""
    for param in params:
        if isinstance(param, TyperOption) and (param.is_flag or param.count):
            if param.metavar is None:
                param.metavar = ""
    return params


def _usage_name(param: TyperArgument) -> str:
    """``TARGET``, ``[ARGUMENTS]...``: click's conventions for the usage line."""
    name = param.metavar or (param.name or "").upper()
    if not param.required:
        name = f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


class Command(typer.core.TyperCommand):
    """A command whose help follows the usual conventions (see :func:`_usage_name`)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain_flags(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(_usage_name(param))
        return pieces


class Group(typer.core.TyperGroup):
    """A command group whose help shows no type for flags."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return _plain_flags(super().get_params(ctx))


class App(typer.Typer):
    """``typer.Typer`` whose groups and commands use :class:`Group` and :class:`Command`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", Command)
        decorator: Callable[[F], F] = super().command(*args, **kwargs)
        return decorator


app = App(
    name="pyworkflow",
    help="Durable, event-sourced workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_state = {"debug": False}


@app.callback()
def _root(
    ctx: typer.Context,
    storage: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Storage URL (overrides config key 'storage')."),
    ] = None,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="Level of pyworkflow's logs on stderr.")
    ] = "WARNING",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Log JSON lines.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Options shared by every command."""
    import pyworkflow
    from pyworkflow.storage.base import set_command_mode

    _state["debug"] = debug
    # one-shot commands give up on an unreachable storage server in seconds (e.g. the
    # PostgreSQL plugin's command_timeout); `worker` and `serve` keep a worker's patience
    set_command_mode(ctx.invoked_subcommand not in ("worker", "serve"))
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
        list[str] | None,
        typer.Option("--module", "-m", metavar="MODULE", help="Workflow module to import."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve Prometheus metrics on this port (turns metrics on; default: "
            "metrics.worker_port when metrics are enabled).",
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(
            help="Interface of the metrics server (default: metrics.worker_host, 127.0.0.1)."
        ),
    ] = None,
) -> None:
    """Run a long-lived worker: activate due runs, fire timers, recover expired leases.

    It prints one line on stderr when it starts (storage, modules, concurrency).
    SIGINT/SIGTERM stop it cleanly: no new claims; in-flight activations get
    drain_timeout seconds (a config key), then are left for recovery (never
    half-recorded). With --metrics-port it serves its metrics over HTTP
    (docs/observability.md).
    """
    from pyworkflow.errors import ConfigError
    from pyworkflow.executors.local import Worker, import_modules
    from pyworkflow.metrics import metrics_options, start_metrics_server
    from pyworkflow.redaction import redact_url
    from pyworkflow.runtime import configure, get_runtime

    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise typer.BadParameter("must be a port number (1-65535)", param_hint="--metrics-port")
    metrics_on = {"metrics": {"enabled": True}} if metrics_port is not None else {}
    settings = configure(embedded_worker=False, **metrics_on)
    options = metrics_options(settings)
    port = metrics_port if metrics_port is not None else options.worker_port
    serve_metrics = options.enabled and port is not None
    modules = list(settings.modules) + list(module or [])
    import_modules(modules)
    runtime = get_runtime()
    the_worker = Worker(runtime, concurrency=concurrency)
    metrics_server = None
    metrics_line = ""
    if serve_metrics:
        assert port is not None
        host = metrics_host or options.worker_host
        try:
            metrics_server = start_metrics_server(host, port)
        except OSError as exc:  # the port is taken, the host is not ours
            runtime.shutdown()
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from None
        metrics_line = f", metrics on http://{host}:{port}/metrics"
    render.err_console.print(
        f"pyworkflow worker: storage {redact_url(settings.storage)}, "
        f"modules {', '.join(modules) or '(none)'}, concurrency {the_worker.concurrency}"
        f"{metrics_line}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        the_worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime.call(the_worker.run)
    runtime.shutdown()
    if metrics_server is not None:
        metrics_server.shutdown()


def load_target(spec: str) -> Any:
    """``module:attribute`` or ``path/to/file.py:attribute`` -> the workflow object it names."""
    where, _, attribute = spec.rpartition(":")
    if not where or not attribute:
        raise click_errors.UsageError(
            f"expected MODULE:WORKFLOW or path/to/file.py:WORKFLOW, got {spec!r}"
        )
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _import_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (where == exc.name or where.startswith(exc.name + ".")):
                raise  # the module exists; something it imports does not
            raise click_errors.UsageError(
                f"cannot import module {where!r} (from {spec!r}): {exc}; give MODULE:WORKFLOW "
                "with the module importable from this directory, or path/to/file.py:WORKFLOW"
            ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise click_errors.UsageError(f"module {module.__name__!r} has no {attribute!r}") from None


def _import_file(path: Path) -> Any:
    """Import the Python file ``path`` under the module name a worker would use.

    Under a directory on ``sys.path`` (the current directory is one) that is the
    dotted path from there (``examples/quickstart.py`` -> ``examples.quickstart``),
    so workers started with ``-m examples.quickstart`` know the same workflows;
    elsewhere the file's directory is put on ``sys.path`` and the file imported
    by its stem.
    """
    if not path.is_file():
        raise click_errors.UsageError(f"no such Python file: {str(path)!r}")
    resolved = path.resolve()
    for entry in sys.path:
        base = Path(entry or os.getcwd()).resolve()
        try:
            parts = resolved.with_suffix("").relative_to(base).parts
        except ValueError:
            continue
        if not parts or not all(part.isidentifier() for part in parts):
            continue
        try:
            module = importlib.import_module(".".join(parts))
        except ImportError:
            continue
        if Path(getattr(module, "__file__", "") or "").resolve() == resolved:
            return module
    if not resolved.stem.isidentifier():
        raise click_errors.UsageError(f"cannot import {str(path)!r}: its name is not a module name")
    sys.path.insert(0, str(resolved.parent))
    return importlib.import_module(resolved.stem)


def check_arguments(workflow: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse arguments that do not fit the workflow's signature, before any run exists."""
    from pyworkflow.workflow import definition_of

    try:
        definition_of(workflow).check_arguments(args, kwargs)
    except TypeError as exc:
        raise click_errors.UsageError(str(exc)) from None


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
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The workflow: MODULE:WORKFLOW or path/to/file.py:WORKFLOW.",
        ),
    ],
    arguments: Annotated[
        list[str] | None,
        typer.Argument(metavar="ARGUMENTS", help="Arguments: JSON values or key=value."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until the run ends.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    queue: Annotated[
        str | None,
        typer.Option(metavar="QUEUE", help="Start it in this queue (default: the workflow's)."),
    ] = None,
    priority: Annotated[
        int, typer.Option(help="Its priority in the queue: higher is admitted sooner.")
    ] = 0,
    partition_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY", help="The partition it counts against (partition_concurrency)."
        ),
    ] = None,
    dedup_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY", help="While a run with this key is queued or running, reuse it."
        ),
    ] = None,
) -> None:
    """Start a run; with --wait, follow it live and exit non-zero if it fails.

    Arguments that do not fit the workflow's signature are refused before a
    run is created. This process works on this run only (other due runs are
    left to workers): without --wait up to its first suspension, with --wait
    until it ends.
    """
    import pyworkflow
    from pyworkflow.cli.drive import drive, drives_here, owner_name
    from pyworkflow.cli.watch import report_end, watch_run
    from pyworkflow.client import FlowOptions
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import current_settings, get_runtime
    from pyworkflow.workflow import definition_of

    workflow = load_target(target)
    args, kwargs = parse_args(arguments or [])
    check_arguments(workflow, args, kwargs)
    import_modules(current_settings().modules)
    try:  # a bad queue option is a usage error, refused before any run exists
        FlowOptions.checked(queue, priority, partition_key, dedup_key)
    except (TypeError, ValueError) as exc:
        raise click_errors.UsageError(str(exc)) from None
    if not definition_of(workflow).durable:  # nothing to start: run it here, print the result
        if any(option is not None for option in (queue, partition_key, dedup_key)) or priority:
            raise click_errors.UsageError(
                "queue options do not apply to a transient workflow (durable=False): it runs "
                "at once, in this process"
            )
        _run_transient(workflow, args, kwargs, as_json=as_json)
        return
    run_id = pyworkflow.start_workflow(
        workflow,
        args,
        kwargs,
        queue=queue,
        priority=priority,
        partition_key=partition_key,
        dedup_key=dedup_key,
    )
    runtime = get_runtime()
    local = drives_here(runtime)
    if not wait:
        if local:
            runtime.call(partial(drive, runtime, run_id, owner_name(), until_end=False))
        if as_json:
            render.print_json({"run_id": run_id})
        else:
            render.console.print(f"started run [bold]{run_id}[/]")
        return
    if not as_json:
        render.console.print(f"started run [bold]{run_id}[/]; following it (Ctrl-C to stop)")

    info, current = watch_run(runtime, run_id, local=local, as_json=as_json)
    report_end(run_id, info, current, as_json=as_json)


def _run_transient(
    workflow: Any, args: Sequence[Any], kwargs: dict[str, Any], *, as_json: bool
) -> None:
    """``pyworkflow run`` of a transient workflow: run it in this process, print its outcome."""
    import pyworkflow
    from pyworkflow.workflow import definition_of

    name = definition_of(workflow).name
    try:
        result = pyworkflow.execute_workflow(workflow, tuple(args), kwargs)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if as_json:
            render.print_json({"transient": True, "status": "failed", "error": error})
        else:
            render.print_line(f"transient run of {name} failed (nothing was stored)")
            render.print_line(f"error: {error}")
        raise typer.Exit(1) from None
    if as_json:
        render.print_json({"transient": True, "status": "completed", "result": result})
    else:
        render.print_line(f"transient run of {name} completed (nothing was stored)")
        render.print_line(f"result: {result!r}")


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
    rows = [
        [
            p.name,
            f"{p.distribution} {p.version}" if p.distribution else "",
            ", ".join(p.storage_schemes),
            ", ".join(p.executors),
            ", ".join(p.serializers),
        ]
        for p in infos
    ]
    render.print_table(("plugin", "distribution", "storage", "executors", "serializers"), rows)


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
    render.print_table(("key", "value", "source"), [[k, repr(v), s] for k, v, s in rows])


def main() -> None:
    """Entry point of the ``pyworkflow`` console script: one-line errors unless --debug.

    Usage errors (a bad option, argument or target) exit 2, other errors 1.
    """
    try:
        code = app(prog_name="pyworkflow", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        render.err_console.print("aborted")
        sys.exit(130)
    except Exception as exc:
        from pyworkflow.redaction import redact_text

        if isinstance(exc, click_errors.ClickException):
            # one line, like every other error (click's own format spans several)
            message = redact_text(exc.format_message())
            context = getattr(exc, "ctx", None)
            if isinstance(exc, click_errors.UsageError) and context is not None:
                message += f" (see '{context.command_path} --help')"
            render.print_line(f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        if _state["debug"]:
            raise
        render.print_line(f"error: {redact_text(str(exc))}", err=True)
        sys.exit(1)


from pyworkflow.cli import init_cmd as _init_cmd  # noqa: E402, F401  (registers `init`)
from pyworkflow.cli import serve as _serve  # noqa: E402, F401  (registers `serve`)
