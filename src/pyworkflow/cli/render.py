"""Rich output for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from pyworkflow.models import Event, EventType, Run, RunStatus, shown_payload

__all__ = ["console", "err_console", "event_line", "events_table", "print_json", "runs_table"]

console = Console()
err_console = Console(stderr=True)

STATUS_STYLE = {
    RunStatus.PENDING: "yellow",
    RunStatus.RUNNING: "cyan",
    RunStatus.SUSPENDED: "blue",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "magenta",
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def run_to_json(run: Run) -> dict[str, Any]:
    """A run's row as JSON-ready data (serialized payloads left as text)."""
    return {
        "run_id": run.run_id,
        "workflow": run.workflow_name,
        "version": run.workflow_version,
        "status": run.status.value,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "completed_at": _iso(run.completed_at),
        "wake_at": _iso(run.wake_at),
        "error_message": run.error_message,
        "events": run.last_seq,
    }


def event_to_json(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type.value,
        "correlation_id": event.correlation_id,
        "timestamp": _iso(event.timestamp),
        "payload": shown_payload(event),
    }


def print_json(data: Any) -> None:
    """Plain JSON on stdout (no colour, no wrapping)."""
    print(json.dumps(data, indent=2, default=str))


def runs_table(runs: Sequence[Run]) -> Table:
    table = Table("workflow", "status", "created", "updated", "events")
    table.add_column("run id", no_wrap=True)
    for run in runs:
        style = STATUS_STYLE.get(run.status, "")
        table.add_row(
            run.workflow_name,
            f"[{style}]{run.status.value}[/]",
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            run.updated_at.strftime("%H:%M:%S"),
            str(run.last_seq),
            run.run_id,
        )
    return table


def event_line(event: Event) -> str:
    """One human line for an event: what happened to which step, sleep or hook."""
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
    what = f"{name} " if name and name not in ("sleep", "hook") else ""
    return f"{event.type.value} {what}{detail}".strip()


def events_table(events: Sequence[Event]) -> Table:
    """The timeline: each event with the time since the previous one."""
    table = Table("seq", "time", "+ms", "op", "event")
    previous: datetime | None = None
    for event in events:
        delta = (event.timestamp - previous).total_seconds() * 1000 if previous else 0.0
        previous = event.timestamp
        table.add_row(
            str(event.seq),
            event.timestamp.strftime("%H:%M:%S.%f")[:-3],
            f"{delta:.1f}",
            event.correlation_id or "",
            event_line(event),
        )
    return table
