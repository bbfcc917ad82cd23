"""``pyworkflow schedules ...``: list, create, show, pause, resume, delete, trigger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import App, app

if TYPE_CHECKING:
    from pyworkflow.models import Schedule

schedules_app = App(help="Create and manage cron and interval schedules.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ModuleOption = Annotated[
    list[str] | None,
    typer.Option("--module", "-m", metavar="MODULE", help="Workflow module to import."),
]

SCHEDULES_HEADERS = ("name", "workflow", "cron", "timezone", "state", "next fire (UTC)", "last run")


def _import(module: list[str] | None) -> None:
    """Import the modules of the ``modules`` key and of ``-m``, so their workflows register."""
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import current_settings

    import_modules(list(current_settings().modules) + list(module or []))


def _json(schedule: Schedule) -> dict[str, Any]:
    from pyworkflow.flowshape import schedule_json
    from pyworkflow.runtime import get_runtime

    return schedule_json(get_runtime(), schedule)


def _time(moment: str | None) -> str:
    return moment.replace("T", " ")[:19] if moment else ""


def _rows(schedules: list[dict[str, Any]]) -> list[list[render.Cell]]:
    from rich.text import Text

    return [
        [
            Text(s["name"]),
            Text(s["workflow"]),
            Text(s["cron"]),
            Text(s["timezone"]),
            Text("paused", style="yellow") if s["paused"] else Text("active", style="green"),
            _time(s["next_fire_at"]),
            s["last_run_id"] or "",
        ]
        for s in schedules
    ]


def _bad(exc: Exception) -> typer.BadParameter:
    return typer.BadParameter(str(exc))


def _load_json(text: str | None, option: str, kind: type) -> Any:
    """``--args``/``--kwargs``: strict JSON of the given kind (array or object)."""
    from pyworkflow.jsoninput import JsonInputError, loads_strict

    if text is None:
        return kind()
    try:
        value = loads_strict(text)
    except JsonInputError as exc:
        raise typer.BadParameter(f"{option} is not acceptable JSON: {exc}") from None
    if not isinstance(value, kind):
        want = "an array" if kind is list else "an object"
        raise typer.BadParameter(f"{option} must be {want} in JSON, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type (``an object``, ``a string``...)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"


def _workflow(spec: str) -> Any:
    """A registered workflow name, else a ``MODULE:WORKFLOW`` / ``file.py:WORKFLOW`` target."""
    from pyworkflow.cli.app import load_target
    from pyworkflow.workflow import registered_workflows

    if spec in registered_workflows():
        return spec
    if ":" in spec:
        return load_target(spec)
    known = ", ".join(sorted(registered_workflows())) or "none"
    raise typer.BadParameter(
        f"no workflow named {spec!r} is registered here (registered: {known}); give "
        "MODULE:WORKFLOW, or import its module with -m MODULE or the 'modules' config key"
    )


@schedules_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """Every schedule, by name: its workflow, cron, state and next tick."""
    import pyworkflow.schedules as schedules

    shown = [_json(s) for s in schedules.list_schedules()]
    if as_json:
        render.print_json(shown)
    else:
        render.print_table(SCHEDULES_HEADERS, _rows(shown))


@schedules_app.command()
def create(
    name: Annotated[str, typer.Argument(help="The schedule's name (unique).")],
    workflow: Annotated[
        str,
        typer.Argument(help="A workflow name, MODULE:WORKFLOW or path/to/file.py:WORKFLOW."),
    ],
    cron: Annotated[
        str | None,
        typer.Argument(
            help="Cron expression: 5 fields, 6 with seconds first, or @daily... "
            "(or give --every instead)",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="An interval instead of a cron: 30s, 15m, 1h30m, 1d (whole seconds, at least 1s).",
        ),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            metavar="DATETIME",
            help="With --every: the first tick, ISO 8601 with an offset "
            "(2026-01-05T09:30:00+01:00); default the Unix epoch (ticks aligned in UTC).",
        ),
    ] = None,
    timezone: Annotated[
        str, typer.Option(metavar="TZ", help="IANA time zone the cron is read in.")
    ] = "UTC",
    args: Annotated[
        str | None,
        typer.Option("--args", metavar="JSON", help="Positional arguments: a JSON array."),
    ] = None,
    kwargs: Annotated[
        str | None,
        typer.Option("--kwargs", metavar="JSON", help="Keyword arguments: a JSON object."),
    ] = None,
    overlap: Annotated[
        str, typer.Option(help="While the previous run runs: skip, allow or cancel_previous.")
    ] = "skip",
    catchup: Annotated[
        str, typer.Option(help="Ticks missed during downtime: none, latest or all.")
    ] = "latest",
    grace: Annotated[
        str, typer.Option(metavar="DURATION", help="A tick later than this counts as missed.")
    ] = "1m",
    catchup_window: Annotated[
        str,
        typer.Option(metavar="DURATION", help="With --catchup all: how far back ticks are fired."),
    ] = "1d",
    queue: Annotated[
        str | None, typer.Option(metavar="QUEUE", help="The queue its runs go to.")
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a schedule of the same name.")
    ] = False,
    module: ModuleOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a schedule that starts a run of WORKFLOW at each tick of CRON or --every.

    Give a CRON expression or --every DURATION (with --anchor DATETIME), not
    both. Its arguments are checked against the workflow's signature now. Workers
    (`pyworkflow worker`) fire it; each tick starts exactly one run.
    """
    import pyworkflow.schedules as schedules
    from pyworkflow.errors import ScheduleExistsError, WorkflowNotFoundError

    _import(module)
    target = _workflow(workflow)
    values = _load_json(args, "--args", list), _load_json(kwargs, "--kwargs", dict)
    if cron is not None and every is not None:
        raise typer.BadParameter("give a CRON expression or --every, not both")
    if cron is None and every is None:
        raise typer.BadParameter(
            "give a CRON expression (such as '0 * * * *') or --every DURATION (such as 15m)"
        )
    if anchor is not None and every is None:
        raise typer.BadParameter("--anchor goes with --every (an interval), not with a cron")
    try:
        schedule = schedules.create_schedule(
            name,
            target,
            cron,
            every=every,
            anchor=_anchor(anchor),
            args=values[0],
            kwargs=values[1],
            timezone=timezone,
            overlap=overlap,
            catchup=catchup,
            grace=grace,
            catchup_window=catchup_window,
            queue=queue,
            paused=paused,
            replace=replace,
        )
    except WorkflowNotFoundError as exc:
        raise _bad(exc) from None
    except ScheduleExistsError:  # exit 1, like any other conflict with what is stored
        raise ScheduleExistsError(
            f"a schedule named {name!r} exists already; delete it first or pass --replace"
        ) from None
    except (TypeError, ValueError) as exc:
        raise _bad(exc) from None
    data = _json(schedule)
    if as_json:
        render.print_json(data)
    else:
        render.print_line(
            f"schedule {schedule.name} created: {schedule.workflow_name} at {schedule.cron!r} "
            f"({schedule.timezone}), next tick {_time(data['next_fire_at']) or 'never'}"
            + (" (paused)" if schedule.paused else "")
        )


def _anchor(text: str | None) -> Any:
    """``--anchor``: an ISO 8601 date-time with an offset (a naive one is refused later)."""
    from datetime import datetime

    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"--anchor {text!r} is not an ISO 8601 date-time such as 2026-01-05T09:30:00+00:00"
        ) from None


@schedules_app.command()
def show(name: str, as_json: JsonOption = False) -> None:
    """One schedule: its workflow, input, policies, state and ticks."""
    import pyworkflow.schedules as schedules

    data = _json(schedules.get_schedule(name))
    if as_json:
        render.print_json(data)
        return
    rows = [
        ("workflow", data["workflow"]),
        _timing_row(data),
        ("state", "paused" if data["paused"] else "active"),
        ("args", _dumps(data["args"])),
        ("kwargs", _dumps(data["kwargs"])),
        ("overlap", data["overlap"]),
        ("catchup", data["catchup"]),
        ("grace", f"{data['grace']:g}s"),
        ("catchup window", f"{data['catchup_window']:g}s"),
        ("queue", data["queue"] or ""),
        ("origin", data["origin"]),
        ("next fire", data["next_fire_at"] or "never"),
        ("last fire", data["last_fire_at"] or ""),
        ("last run", data["last_run_id"] or ""),
        ("created", data["created_at"]),
        ("updated", data["updated_at"]),
    ]
    render.print_line(f"schedule {data['name']}")
    render.print_table(("field", "value"), [[k, v] for k, v in rows])


def _timing_row(data: dict[str, Any]) -> tuple[str, str]:
    """``cron  0 * * * * (UTC)`` or ``every  15m from 1970-01-01T00:00:00+00:00``."""
    from pyworkflow.schedules.interval import is_interval

    if not is_interval(data["cron"]):
        return "cron", f"{data['cron']} ({data['timezone']})"
    every = data["cron"].strip()[len("@every") :].split(" from ")[0].strip()
    return "every", f"{every} from {data['anchor']}"


def _dumps(value: Any) -> str:
    import json

    return "(not decodable here)" if value is None else json.dumps(value)


@schedules_app.command()
def pause(name: str, as_json: JsonOption = False) -> None:
    """Stop firing the schedule until resumed (runs already started go on)."""
    import pyworkflow.schedules as schedules

    schedule = schedules.pause_schedule(name)
    if as_json:
        render.print_json(_json(schedule))
    else:
        render.print_line(f"schedule {schedule.name} paused")


@schedules_app.command()
def resume(name: str, as_json: JsonOption = False) -> None:
    """Fire the schedule again from its next tick after now (no catch-up of the pause)."""
    import pyworkflow.schedules as schedules

    schedule = schedules.resume_schedule(name)
    data = _json(schedule)
    if as_json:
        render.print_json(data)
    else:
        render.print_line(
            f"schedule {schedule.name} resumed; next tick {_time(data['next_fire_at']) or 'never'}"
        )


@schedules_app.command()
def delete(
    name: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the schedule (the runs it started stay); asks first unless --yes."""
    import pyworkflow.schedules as schedules

    schedule = schedules.get_schedule(name)  # an unknown name fails before the question
    if not yes:
        typer.confirm(
            f"Delete schedule {schedule.name!r} ({schedule.workflow_name} at {schedule.cron!r})?",
            abort=True,
            err=True,
        )
    deleted = schedules.delete_schedule(name)
    if as_json:
        render.print_json({"name": name, "deleted": deleted})
    elif deleted:
        render.print_line(f"schedule {name} deleted")
    else:
        render.print_line(f"schedule {name} was already deleted")


@schedules_app.command()
def trigger(name: str, module: ModuleOption = None, as_json: JsonOption = False) -> None:
    """Start a run of the schedule now, whatever its overlap policy and pause; prints its id.

    The workflow's module must be importable here (-m MODULE or the
    'modules' key); workers run the new run.
    """
    import pyworkflow.schedules as schedules
    from pyworkflow.errors import WorkflowNotFoundError

    _import(module)
    try:
        run_id = schedules.trigger_schedule(name)
    except WorkflowNotFoundError as exc:
        raise typer.BadParameter(f"{exc}; or pass -m MODULE") from None
    if as_json:
        render.print_json({"name": name, "run_id": run_id})
    else:
        render.print_line(f"started run {run_id}")
