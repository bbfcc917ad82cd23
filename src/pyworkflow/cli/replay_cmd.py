"""``pyworkflow replay FILES...``: replay exported histories against the current code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pyworkflow.cli import render
from pyworkflow.cli.app import app

#: Exit codes: every history replays, one diverges, one cannot be read or replayed here.
OK, DIVERGED, UNREADABLE = 0, 1, 2
HINT = "import its module with -m MODULE or the 'modules' config key"


@app.command()
def replay(
    files: Annotated[
        list[Path],
        typer.Argument(metavar="FILES", help="History files (from 'runs export'), or directories."),
    ],
    module: Annotated[
        list[str] | None,
        typer.Option("--module", "-m", metavar="MODULE", help="Workflow module to import."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay recorded histories against the workflow code, without side effects.

    Imports the modules of config key 'modules' and each -m MODULE, then
    prints one line per history: ok, or where it diverges (the operation's
    position and both operations). Nothing is run or written. Exit code 0 if
    every history replays, 1 if one diverges, 2 if one cannot be read (or
    names a workflow not imported here).
    """
    from pyworkflow.errors import WorkflowNotFoundError
    from pyworkflow.executors.local import import_modules
    from pyworkflow.history import HistoryFormatError, load_history
    from pyworkflow.runtime import current_settings
    from pyworkflow.testing.histories import history_sources, replay_history, workflow_for

    import_modules(list(current_settings().modules) + list(module or []))
    code = OK
    rows: list[dict[str, Any]] = []
    for source in history_sources(files):
        try:
            history = load_history(source)
            report = replay_history(history, workflow_for(history, {}, hint=HINT))
        except (HistoryFormatError, WorkflowNotFoundError) as exc:
            code = UNREADABLE
            problem = exc.problem if isinstance(exc, HistoryFormatError) else str(exc)
            problem = problem.removeprefix(f"history {source}: ")
            rows.append({"file": str(source), "status": "error", "message": problem})
            if not as_json:
                render.print_line(f"{source}: error: {problem}")
            continue
        if not report.deterministic:
            code = max(code, DIVERGED)
        rows.append(
            {
                "file": str(source),
                "status": "ok" if report.deterministic else "diverged",
                "run_id": report.run_id,
                "workflow": report.workflow,
                "operations": report.operations,
                "position": report.position,
                "recorded": report.recorded,
                "called": report.called,
                "message": report.message,
            }
        )
        if not as_json:
            render.print_line(report.describe())
    if as_json:
        render.print_json(rows)
    if code != OK:
        raise typer.Exit(code)
