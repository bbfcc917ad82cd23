"""Rich output for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from pyworkflow.models import Event, Run

__all__ = [
    "console",
    "err_console",
    "event_line",
    "events_rows",
    "events_table",
    "print_json",
    "print_line",
    "print_table",
    "runs_rows",
    "runs_table",
]

console = Console()
err_console = Console(stderr=True)

#: Colour of each run status (keys are the ``RunStatus`` values: ``--help`` does
#: not import the models).
STATUS_STYLE: dict[str, str] = {
    "pending": "yellow",
    "running": "cyan",
    "suspended": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
    "continued": "green",
    "queued": "dim",
}


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour, no wrapping)."""
    print(json.dumps(data, indent=2, default=str))


def print_line(text: str, *, err: bool = False) -> None:
    """One line of text as is: no markup, and never wrapped (piped output stays whole)."""
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


#: A table cell: text, or Rich ``Text`` carrying a style (shown on terminals only).
Cell = str | Text


def _table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Table:
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    return table


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """A Rich table on a terminal; otherwise plain rows, columns aligned by spaces.

    Piped or redirected output has no box drawing and no cell cut short, so
    ``grep``/``awk`` see whole values (use ``--json`` for programs).
    """
    rows = list(rows)
    if console.is_terminal:
        console.print(_table(headers, rows))
        return
    plain = [[_plain(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in plain:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in [list(headers), *plain]:
        print_line("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _plain(cell: Cell) -> str:
    text = cell.plain if isinstance(cell, Text) else cell
    return text.replace("\r", "\\r").replace("\n", "\\n")


RUNS_HEADERS = ("workflow", "status", "created", "updated", "events", "run id")


def runs_rows(runs: Sequence[Run]) -> list[list[Cell]]:
    """One row per run, under :data:`RUNS_HEADERS`."""
    return [
        [
            Text(run.workflow_name),
            Text(run.status.value, style=STATUS_STYLE.get(run.status, "")),
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            run.updated_at.strftime("%H:%M:%S"),
            str(run.last_seq),
            run.run_id,
        ]
        for run in runs
    ]


def runs_table(runs: Sequence[Run]) -> Table:
    """The runs as a Rich table."""
    return _table(RUNS_HEADERS, runs_rows(runs))


def event_line(event: Event) -> str:
    """One human line for an event: what happened to which step, sleep or hook."""
    from pyworkflow.models import EventType

    payload = event.payload
    name = payload.get("name") or payload.get("kind") or ""
    detail = ""
    if event.type == EventType.STEP_STARTED:
        detail = f"attempt {payload.get('attempt')}"
    elif event.type in (EventType.STEP_RETRYING, EventType.STEP_FAILED):
        detail = str(payload.get("error_message", ""))
        if event.type == EventType.STEP_RETRYING:
            detail += f" (retry at {payload.get('due_at')})"
    elif event.type == EventType.WAIT_CREATED:
        detail = f"until {payload.get('due_at')}"
    elif event.type in (EventType.HOOK_CREATED, EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED):
        detail = f"token {payload.get('token')}"
    elif event.type == EventType.WORKFLOW_FAILED:
        detail = str(payload.get("error_message", ""))
    elif event.type == EventType.WORKFLOW_CONTINUED_AS_NEW:
        detail = f"as run {payload.get('next_run_id')}"
    elif event.type == EventType.WORKFLOW_STARTED and payload.get("continued_from"):
        detail = f"continuing run {payload['continued_from']}"
    elif event.type == EventType.WORKFLOW_STARTED and payload.get("parent_run_id"):
        detail = f"child of run {payload['parent_run_id']}"
    elif event.type in (EventType.CHILD_WORKFLOW_STARTED, EventType.CHILD_WORKFLOW_COMPLETED):
        detail = f"run {payload.get('child_run_id')}"
    elif event.type == EventType.CHILD_WORKFLOW_FAILED:
        detail = f"run {payload.get('child_run_id')} {payload.get('error_message', '')}"
    what = f"{name} " if name and name not in ("sleep", "hook") else ""
    return f"{event.type.value} {what}{detail}".strip()


EVENTS_HEADERS = ("seq", "time", "+ms", "op", "event")


def events_rows(events: Sequence[Event]) -> list[list[Cell]]:
    """The timeline (:data:`EVENTS_HEADERS`): each event with the time since the previous one."""
    rows: list[list[Cell]] = []
    previous: datetime | None = None
    for event in events:
        delta = (event.timestamp - previous).total_seconds() * 1000 if previous else 0.0
        previous = event.timestamp
        rows.append(
            [
                str(event.seq),
                event.timestamp.strftime("%H:%M:%S.%f")[:-3],
                f"{delta:.1f}",
                event.correlation_id or "",
                Text(event_line(event)),
            ]
        )
    return rows


def events_table(events: Sequence[Event]) -> Table:
    """The timeline as a Rich table."""
    return _table(EVENTS_HEADERS, events_rows(events))
