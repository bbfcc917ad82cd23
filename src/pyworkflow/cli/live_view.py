"""The live view of ``pyworkflow run --wait`` on a terminal.

A pure function of the run's events: :func:`build_model` folds them into a
:class:`LiveModel` (steps with their attempts, current sleeps, hooks waiting,
children, retries and the run's status) and :func:`render_model` draws it as
a Rich renderable. The command redraws it with ``rich.live.Live`` as events
arrive, and between them (:class:`LiveRender`) so that the time left to each
sleep and retry counts down; off a terminal (or with ``NO_COLOR`` / ``TERM=dumb``) it prints plain
lines instead (:func:`live_enabled`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from pyworkflow.models import Event

__all__ = [
    "ChildRow",
    "LiveModel",
    "LiveRender",
    "StepRow",
    "build_model",
    "countdown",
    "live_enabled",
    "live_view",
    "render_model",
]

#: Colour of each step state.
STEP_STYLE: dict[str, str] = {
    "scheduled": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "completed": "green",
    "failed": "red",
}


@attrs.define
class StepRow:
    """One step call (one correlation id) as the view shows it."""

    name: str
    state: str = "scheduled"
    attempt: int = 0
    retry_at: str | None = None
    error: str | None = None


@attrs.define
class ChildRow:
    """One child run started by the run."""

    name: str
    run_id: str
    state: str = "running"


@attrs.define
class LiveModel:
    """What the live view shows, folded from a run's events (see :func:`build_model`)."""

    run_id: str = ""
    status: str = "pending"
    steps: dict[str, StepRow] = attrs.field(factory=dict)
    sleeps: dict[str, str] = attrs.field(factory=dict)  # correlation id -> due time
    hooks: dict[str, str] = attrs.field(factory=dict)  # correlation id -> token
    children: dict[str, ChildRow] = attrs.field(factory=dict)
    error: str | None = None
    events: int = 0


_END_STATUS = {
    "workflow_completed": "completed",
    "workflow_failed": "failed",
    "workflow_cancelled": "cancelled",
    "workflow_continued_as_new": "continued",
}


def _when(value: Any) -> str:
    """A due time as ``YYYY-MM-DD HH:MM:SS`` (UTC as stored); unparsable values as they are."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


_SHOWN = "%Y-%m-%d %H:%M:%S"


def countdown(due: str, now: datetime) -> str:
    """How long until ``due`` (as :func:`_when` shows it): ``in 4m 07s``, ``due now``."""
    try:
        at = datetime.strptime(due, _SHOWN).replace(tzinfo=UTC)
    except ValueError:
        return ""
    left = int((at - now).total_seconds())
    if left <= 0:
        return "due now"
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"in {days}d {hours}h"
    if hours:
        return f"in {hours}h {minutes:02d}m"
    if minutes:
        return f"in {minutes}m {seconds:02d}s"
    return f"in {seconds}s"


def _due(due: str | None, now: datetime | None) -> str:
    if due is None or now is None:
        return due or ""
    left = countdown(due, now)
    return f"{due} ({left})" if left else due


def build_model(events: Iterable[Event]) -> LiveModel:
    """Fold a run's events (in order) into the model the view draws."""
    model = LiveModel()
    for event in events:
        _apply(model, event)
    if model.status in _END_STATUS.values():  # nothing waits any more once the run ended
        model.sleeps.clear()
        model.hooks.clear()
    return model


def _step(model: LiveModel, key: str, payload: Any) -> StepRow:
    row = model.steps.get(key)
    if row is None:
        row = model.steps[key] = StepRow(name=str(payload.get("name") or key))
    return row


def _apply(model: LiveModel, event: Event) -> None:
    kind = event.type.value
    payload = event.payload
    key = event.correlation_id or ""
    model.run_id = event.run_id
    model.events += 1
    if kind in ("workflow_started", "workflow_resumed", "workflow_retried"):
        model.status = "running"
    elif kind == "workflow_suspended":
        model.status = "suspended"
    elif kind in _END_STATUS:
        model.status = _END_STATUS[kind]
        if kind == "workflow_failed":
            model.error = str(payload.get("error_message", "")) or None
    elif kind == "step_scheduled":
        _step(model, key, payload)
    elif kind == "step_started":
        row = _step(model, key, payload)
        row.state = "running"
        row.attempt = int(payload.get("attempt") or row.attempt + 1)
        row.retry_at = None
    elif kind == "step_retrying":
        row = _step(model, key, payload)
        row.state = "retrying"
        row.retry_at = _when(payload.get("due_at"))
        row.error = str(payload.get("error_message", "")) or None
    elif kind == "step_completed":
        row = _step(model, key, payload)
        row.state, row.retry_at, row.error = "completed", None, None
    elif kind == "step_failed":
        row = _step(model, key, payload)
        row.state, row.retry_at = "failed", None
        row.error = str(payload.get("error_message", "")) or None
    elif kind == "wait_created":
        model.sleeps[key] = _when(payload.get("due_at"))
    elif kind == "wait_completed":
        model.sleeps.pop(key, None)
    elif kind == "hook_created":
        model.hooks[key] = str(payload.get("token", ""))
    elif kind in ("hook_received", "hook_disposed"):
        model.hooks.pop(key, None)
    elif kind == "child_workflow_started":
        child_id = str(payload.get("child_run_id", ""))
        model.children[key] = ChildRow(name=str(payload.get("name") or child_id), run_id=child_id)
    elif kind == "child_workflow_completed" and key in model.children:
        model.children[key].state = "completed"
    elif kind == "child_workflow_failed" and key in model.children:
        model.children[key].state = str(payload.get("status") or "failed")


def render_model(model: LiveModel, now: datetime | None = None) -> RenderableType:
    """The model as a Rich renderable: a steps table, the current waits, the status line.

    With ``now``, each due time (sleeps, retries) also says how long is left.
    """
    from pyworkflow.cli.render import STATUS_STYLE

    parts: list[RenderableType] = []
    if model.steps:
        table = Table("step", "state", "attempt", "detail", title="steps", title_justify="left")
        for row in model.steps.values():
            detail = ""
            if row.state == "retrying":
                detail = f"retry at {_due(row.retry_at, now)}"
                if row.error:
                    detail += f" ({row.error})"
            elif row.state == "failed" and row.error:
                detail = row.error
            table.add_row(
                row.name,
                Text(row.state, style=STEP_STYLE.get(row.state, "")),
                str(row.attempt) if row.attempt else "",
                Text(detail),
            )
        parts.append(table)
    waits = [
        Text(f"sleeping until {_due(due, now)}", style="blue") for due in model.sleeps.values()
    ]
    waits += [Text(f"waiting for hook {token}", style="blue") for token in model.hooks.values()]
    waits += [
        Text(f"child {child.name} (run {child.run_id}) {child.state}")
        for child in model.children.values()
    ]
    if waits:
        parts.append(Group(Text("waits", style="bold"), *waits))
    status = Text.assemble(
        "run ",
        (model.run_id, "bold"),
        " ",
        (model.status, STATUS_STYLE.get(model.status, "")),
        f"  ({model.events} events)",
    )
    if model.error:
        status.append(f"  error: {model.error}", style="red")
    parts.append(status)
    return Group(*parts)


def live_view(events: Iterable[Event], now: datetime | None = None) -> RenderableType:
    """The live view of a run's events: :func:`render_model` of :func:`build_model`."""
    return render_model(build_model(events), now)


@attrs.frozen
class LiveRender:
    """The model drawn at each refresh with the time then, so countdowns tick between events."""

    model: LiveModel

    def __rich__(self) -> RenderableType:
        from pyworkflow.models import utcnow

        return render_model(self.model, utcnow())


def live_enabled(console: Console) -> bool:
    """Whether ``console`` gets the live view: a terminal, not dumb, and no ``NO_COLOR``."""
    if not console.is_terminal or console.is_dumb_terminal:
        return False
    return not os.environ.get("NO_COLOR")
