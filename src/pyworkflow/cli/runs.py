"""``pyworkflow runs ...``: list, show, events, cancel, retry, replay."""

from __future__ import annotations

from typing import Annotated

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app

runs_app = typer.Typer(help="Inspect and repair runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@runs_app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    import pyworkflow
    from pyworkflow.models import RunStatus

    if status is not None and status not in {s.value for s in RunStatus}:
        valid = ", ".join(s.value for s in RunStatus)
        raise typer.BadParameter(f"unknown status {status!r}; use one of {valid}")
    page = pyworkflow.list_runs(status=status, workflow=workflow, limit=limit)
    if as_json:
        render.print_json([render.run_to_json(r) for r in page.runs])
    else:
        render.console.print(render.runs_table(page.runs))


@runs_app.command()
def show(run_id: str, as_json: JsonOption = False) -> None:
    """A run's summary and its event timeline with durations."""
    import pyworkflow
    from pyworkflow.runtime import get_runtime

    runtime = get_runtime()
    run = runtime.call(runtime.storage.get_run, run_id)
    events = pyworkflow.get_events(run_id)
    if as_json:
        data = render.run_to_json(run)
        data["events"] = [render.event_to_json(e) for e in events]
        render.print_json(data)
        return
    style = render.STATUS_STYLE[run.status]
    render.console.print(
        f"[bold]{run.run_id}[/]  {run.workflow_name}  [{style}]{run.status.value}[/]"
    )
    render.console.print(
        f"created {run.created_at.isoformat()}  updated {run.updated_at.isoformat()}"
    )
    if run.wake_at:
        render.console.print(f"wakes at {run.wake_at.isoformat()}")
    if run.error_message:
        render.console.print(f"error: {run.error_message}", markup=False)
    render.console.print(render.events_table(events))


@runs_app.command()
def events(run_id: str, as_json: JsonOption = False) -> None:
    """A run's event log."""
    import pyworkflow

    log = pyworkflow.get_events(run_id)
    if as_json:
        render.print_json([render.event_to_json(e) for e in log])
    else:
        render.console.print(render.events_table(log))


@runs_app.command()
def cancel(run_id: str, as_json: JsonOption = False) -> None:
    """Deliver a cancellation into a run."""
    import pyworkflow

    done = pyworkflow.cancel(run_id, reason="cancelled from the CLI")
    if as_json:
        render.print_json({"run_id": run_id, "cancel_requested": done})
    elif done:
        render.console.print(f"cancellation requested for {run_id}")
    else:
        render.console.print(f"run {run_id} had already ended")


@runs_app.command()
def retry(
    run_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Workflow module to import.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a failed run from its failed step (completed steps are not run again)."""
    import pyworkflow
    from pyworkflow.client import retry_run
    from pyworkflow.executors.local import import_modules
    from pyworkflow.runtime import current_settings
    from pyworkflow.workflow import registered_workflows

    pyworkflow.configure(embedded_worker=True)  # this process runs it unless --wait is off
    import_modules(list(current_settings().modules) + list(module or []))
    if wait:
        name = pyworkflow.get_run(run_id).workflow
        if name not in registered_workflows():
            raise typer.BadParameter(
                f"workflow {name!r} is not imported here; pass -m MODULE or set 'modules'"
            )
    if not retry_run(run_id):
        raise typer.BadParameter(f"run {run_id} is not failed; only failed runs can be retried")
    status = "pending"
    if wait:
        try:
            pyworkflow.get_result(run_id)
        except Exception:
            pass
        status = pyworkflow.get_run(run_id).status.value
    if as_json:
        render.print_json({"run_id": run_id, "status": status})
    else:
        render.console.print(f"run {run_id} retried; now {status}")
    if wait and status != "completed":
        raise typer.Exit(1)


@runs_app.command()
def replay(
    run_id: str,
    module: Annotated[
        list[str] | None, typer.Option("--module", "-m", help="Workflow module to import.")
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
