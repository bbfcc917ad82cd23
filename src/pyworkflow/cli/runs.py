"""``pyworkflow runs ...``: list, show, events, stream, cancel, retry, replay, export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import App, app

if TYPE_CHECKING:
    from pyworkflow.models import Run

runs_app = App(help="Inspect and repair runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@runs_app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 50,
    parent: Annotated[str | None, typer.Option(help="Only the child runs of this run.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    import pyworkflow
    from pyworkflow.models import RunStatus

    if status is not None and status not in {s.value for s in RunStatus}:
        valid = ", ".join(s.value for s in RunStatus)
        raise typer.BadParameter(f"unknown status {status!r}; use one of {valid}")
    from pyworkflow.cli.live_view import live_enabled

    if limit <= RUNS_PAGE:
        runs = pyworkflow.list_runs(
            status=status, workflow=workflow, limit=limit, parent=parent
        ).runs
    elif as_json or not live_enabled(render.console):
        runs = _walk_runs(status, workflow, limit, parent, lambda n: None)
    else:  # many pages on a terminal: a progress bar, gone once the table is drawn
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        columns = (TextColumn("listing runs"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=render.console, transient=True) as progress:
            task = progress.add_task("runs", total=limit)
            runs = _walk_runs(
                status, workflow, limit, parent, lambda n: progress.update(task, advance=n)
            )
    if as_json:
        from pyworkflow.client import run_info
        from pyworkflow.jsonshape import run_json

        render.print_json([run_json(run_info(r)) for r in runs])
    else:
        render.print_table(render.RUNS_HEADERS, render.runs_rows(runs))


#: Runs per page when ``runs list`` walks many (a ``--limit`` above this).
RUNS_PAGE = 500


def _walk_runs(
    status: str | None,
    workflow: str | None,
    limit: int,
    parent: str | None,
    on_page: Callable[[int], None],
) -> list[Run]:
    """Up to ``limit`` runs, newest first, read ``RUNS_PAGE`` at a time; ``on_page(count)``."""
    import pyworkflow

    runs: list[Run] = []
    cursor: str | None = None
    while len(runs) < limit:
        page = pyworkflow.list_runs(
            status=status,
            workflow=workflow,
            limit=min(RUNS_PAGE, limit - len(runs)),
            cursor=cursor,
            parent=parent,
        )
        runs.extend(page.runs)
        on_page(len(page.runs))
        cursor = page.next_cursor
        if cursor is None or not page.runs:
            break
    return runs


@runs_app.command()
def show(run_id: str, as_json: JsonOption = False) -> None:
    """A run's summary and its event timeline with durations.

    A run whose workflow some worker does not know says which worker, since when.
    """
    from rich.markup import escape

    import pyworkflow
    from pyworkflow.jsonshape import event_json, run_json
    from pyworkflow.runtime import get_runtime
    from pyworkflow.unknown_workflow import describe, unknown_notes

    run = pyworkflow.get_run(run_id)
    events = pyworkflow.get_events(run_id)
    children = _children(run_id, events)
    if as_json:
        data = run_json(run, events)
        data["children"] = children
        data["events"] = [event_json(e) for e in events]  # the log itself, not its length
        render.print_json(data)
        return
    style = render.STATUS_STYLE[run.status]
    render.console.print(
        f"[bold]{run.run_id}[/]  {escape(run.workflow)}  [{style}]{run.status.value}[/]",
        soft_wrap=True,
    )
    render.print_line(f"created {run.created_at.isoformat()}  updated {run.updated_at.isoformat()}")
    if run.wake_at:
        render.print_line(f"wakes at {run.wake_at.isoformat()}")
    if run.error_message:
        render.print_line(f"error: {run.error_message}")
    soft = get_runtime().settings.event_soft_limit
    if len(events) > soft:  # engine/limits.py: the run warned once; the operator sees it here
        render.print_line(
            f"events: {len(events)}, past event_soft_limit ({soft}); a workflow that loops "
            "should call continue_as_new()"
        )
    if run.continued_from:
        render.print_line(f"continues run {run.continued_from}")
    if run.continued_to:
        render.print_line(f"continued as new: run {run.continued_to}")
    if run.parent_run_id:
        render.print_line(f"child of run {run.parent_run_id}")
    if run.queue:
        admitted = run.admitted_at.isoformat() if run.admitted_at else "not yet"
        partition = f"  partition {run.partition_key}" if run.partition_key else ""
        render.print_line(
            f"queue {run.queue}  priority {run.priority}{partition}  admitted {admitted}"
        )
    for child in children:
        render.print_line(
            f"child run {child['run_id']}  {child['workflow']}  {child['status']}"
            f"  (parent-close policy: {child['policy']})"
        )
    for note in unknown_notes(events):
        render.print_line(f"waiting: {describe(note)}")
    for line in _steps_waiting(events):
        render.print_line(line)
    render.print_table(render.EVENTS_HEADERS, render.events_rows(events))


def _steps_waiting(events: list[Any]) -> list[str]:
    """One line per dispatched step attempt scheduled but not started (waiting for a worker).

    A step that asked for resources (``@step(resources=...)``, recorded in its
    ``step_scheduled``) names them: on Ray it waits until a node has them.
    """
    from pyworkflow.models import EventType

    waiting: dict[str, Any] = {}
    for event in events:
        if event.type == EventType.STEP_SCHEDULED and event.correlation_id is not None:
            waiting[event.correlation_id] = event
        elif event.correlation_id is not None and event.type in {
            EventType.STEP_STARTED,
            EventType.STEP_COMPLETED,
            EventType.STEP_FAILED,
            EventType.STEP_RETRYING,
        }:
            waiting.pop(event.correlation_id, None)
        elif event.type in {
            EventType.WORKFLOW_COMPLETED,
            EventType.WORKFLOW_FAILED,
            EventType.WORKFLOW_CANCELLED,
            EventType.WORKFLOW_CONTINUED_AS_NEW,
        }:
            waiting.clear()
    lines = []
    for step_id, event in waiting.items():
        line = f"step {event.payload.get('name', '?')} ({step_id}) waits for a worker"
        resources = event.payload.get("resources")
        if isinstance(resources, dict) and resources:
            asked = ", ".join(f"{name}={amount:g}" for name, amount in resources.items())
            line += f" that has {asked}"
        lines.append(line)
    return lines


@runs_app.command()
def events(run_id: str, as_json: JsonOption = False) -> None:
    """A run's event log."""
    import pyworkflow

    log = pyworkflow.get_events(run_id)
    if as_json:
        from pyworkflow.jsonshape import event_json

        render.print_json([event_json(e) for e in log])
    else:
        render.print_table(render.EVENTS_HEADERS, render.events_rows(log))


@runs_app.command()
def stream(
    run_id: str,
    name: str,
    after: Annotated[
        int, typer.Option(min=0, help="Start after this seq (the last one seen).")
    ] = 0,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow", help="Wait for chunks until the run has ended (default)."
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per chunk and line.")
    ] = False,
) -> None:
    """Print a run's durable stream NAME, one chunk a line, following it while the run works."""
    import json

    import pyworkflow

    for item in pyworkflow.read_stream_sync(run_id, name, after=after, follow=follow):
        if as_json:
            shown = {
                "seq": item.seq,
                "value": item.value,
                "step_id": item.step_id,
                "attempt": item.attempt,
                "created_at": item.created_at.isoformat(),
            }
            render.print_line(json.dumps(shown, default=str))
        elif isinstance(item.value, str):
            render.print_line(item.value)
        else:
            render.print_line(json.dumps(item.value, default=str))


@runs_app.command()
def cancel(run_id: str, as_json: JsonOption = False) -> None:
    """Deliver a cancellation into a run."""
    import pyworkflow

    done = pyworkflow.cancel(run_id, reason="cancelled from the CLI")
    children = _children_after_cancel(run_id) if done else []
    if as_json:
        data: dict[str, Any] = {"run_id": run_id, "cancel_requested": done}
        if children:
            data["children"] = children
        render.print_json(data)
        return
    if done:
        render.console.print(f"cancellation requested for {run_id}")
    else:
        render.console.print(f"run {run_id} had already ended")
    for child in children:
        render.print_line(f"child run {child['run_id']} ({child['workflow']}): {child['outcome']}")


def _children(run_id: str, events: list[Any]) -> list[dict[str, Any]]:
    """The run's child runs: id, workflow, status now, and the parent-close policy."""
    import pyworkflow
    from pyworkflow.jsonshape import children_json, started_children

    if not started_children(events):
        return []
    return children_json(events, pyworkflow.list_runs(parent=run_id, limit=10000).runs)


#: How long ``runs cancel`` waits for a parent to end to report on its children (seconds).
CANCEL_WAIT = 10.0


def _children_after_cancel(run_id: str) -> list[dict[str, Any]]:
    """After cancelling a parent: what happened to each child (its policy, its status)."""
    import time

    import pyworkflow

    if not _children(run_id, pyworkflow.get_events(run_id)):
        return []
    give_up = time.monotonic() + CANCEL_WAIT
    while not pyworkflow.get_run(run_id).status.is_terminal and time.monotonic() < give_up:
        time.sleep(0.1)
    ended = pyworkflow.get_run(run_id).status.is_terminal
    children = _children(run_id, pyworkflow.get_events(run_id))
    for child in children:
        policy = child["policy"]
        if not ended:
            child["outcome"] = f"{child['status']}; {policy} applies when the parent ends"
        elif policy == "abandon":
            child["outcome"] = f"abandoned, {child['status']}"
        elif policy == "terminate":
            child["outcome"] = f"terminated, {child['status']}"
        else:
            child["outcome"] = f"cancellation requested, {child['status']}"
    return children


@runs_app.command()
def retry(
    run_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    module: Annotated[
        list[str] | None,
        typer.Option("--module", "-m", metavar="MODULE", help="Workflow module to import."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a failed run from its failed step (completed steps are not run again).

    This process works on this run only: with --wait until it ends, else up
    to its first suspension; other due runs are left to workers.
    """
    from functools import partial

    import pyworkflow
    from pyworkflow.cli.drive import drive, drives_here, owner_name
    from pyworkflow.cli.watch import report_end, watch_run
    from pyworkflow.client import retry_run
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import current_settings, get_runtime
    from pyworkflow.workflow import registered_workflows

    import_modules(list(current_settings().modules) + list(module or []))
    known = pyworkflow.get_run(run_id).workflow in registered_workflows()
    runtime = get_runtime()
    here = drives_here(runtime)
    if wait and here and not known:
        raise typer.BadParameter(
            f"workflow {pyworkflow.get_run(run_id).workflow!r} is not imported here; "
            "pass -m MODULE or set 'modules'"
        )
    skip = len(pyworkflow.get_events(run_id))  # the plain lines show what the retry adds
    if not retry_run(run_id):
        raise typer.BadParameter(f"run {run_id} is not failed; only failed runs can be retried")
    if wait:
        if not as_json:
            render.console.print(f"retried run [bold]{run_id}[/]; following it (Ctrl-C to stop)")
        info, current = watch_run(runtime, run_id, local=here and known, as_json=as_json, skip=skip)
        report_end(run_id, info, current, as_json=as_json)
        return
    if here and known:
        runtime.call(partial(drive, runtime, run_id, owner_name(), until_end=False))
    status = pyworkflow.get_run(run_id).status.value
    if as_json:
        render.print_json({"run_id": run_id, "status": status})
    else:
        render.console.print(f"run {run_id} retried; now {status}")


@runs_app.command()
def replay(
    run_id: str,
    module: Annotated[
        list[str] | None,
        typer.Option("--module", "-m", metavar="MODULE", help="Workflow module to import."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a run's log against the current code, without side effects.

    Reports whether the code is still deterministic for this run, or the
    first divergence: the operation's position and both operations. Exit
    code 1 on divergence, so it can gate a deploy.
    """
    from pyworkflow.client import check_replay
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import current_settings

    import_modules(list(current_settings().modules) + list(module or []))
    report = check_replay(run_id)
    if as_json:
        render.print_json(
            {
                "run_id": run_id,
                "deterministic": report.deterministic,
                "operations": report.operations,
                "position": report.position,
                "recorded": report.recorded,
                "called": report.called,
                "message": report.message,
            }
        )
    elif report.deterministic:
        render.console.print(
            f"run {run_id}: deterministic ({report.operations} operations replayed)"
        )
    else:
        render.console.print(
            f"run {run_id}: NOT deterministic at operation {report.position}: "
            f"the log has {report.recorded}, the code now calls {report.called}",
            markup=False,
        )
    if not report.deterministic:
        raise typer.Exit(1)


@runs_app.command()
def export(
    run_id: str,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to FILE (default: stdout)."),
    ] = None,
) -> None:
    """Write a run's history (the run and its event log) as one JSON file.

    The file replays with ``pyworkflow replay FILE`` or
    ``pyworkflow.testing.replay``; hook tokens are written as ***. The format
    is documented in docs/testing.md ("Replay recorded histories").
    """
    import sys

    from pyworkflow.history import export_history

    text = export_history(run_id)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    output.write_text(text, encoding="utf-8")
    render.print_line(f"run {run_id} exported to {output}", err=True)
