"""The JSON shape of runs and events: one rule for the CLI's ``--json`` and the HTTP API."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pyworkflow.models import Event, EventType, Run, shown_payload
from pyworkflow.unknown_workflow import note_json, unknown_notes

if TYPE_CHECKING:
    import cattrs

    from pyworkflow.client import RunInfo

__all__ = ["event_json", "jsonable", "run_json"]


@functools.cache
def _converter() -> cattrs.Converter:
    import cattrs.preconf.json  # imported on first use: the CLI's start stays light

    return cattrs.preconf.json.make_converter()


def jsonable(value: Any) -> Any:
    """``value`` as JSON-compatible data (attrs classes, datetimes, ...); else its ``str()``."""
    try:
        data = _converter().unstructure(value)
        json.dumps(data, allow_nan=False)
    except Exception:
        return str(value)
    return data


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def run_json(info: RunInfo, events: Sequence[Event] | None = None) -> dict[str, Any]:
    """A run as JSON (the ``Run`` schema of the OpenAPI document).

    ``result`` is the decoded return value made JSON-safe (:func:`jsonable`);
    ``events`` is the number of events in the run's log. Given the run's
    ``events``, it also lists the workers that do not know the run's workflow
    (``unknown_workflow``, empty when none).
    """
    data: dict[str, Any] = {
        "run_id": info.run_id,
        "workflow": info.workflow,
        "version": info.version,
        "status": info.status.value,
        "created_at": _iso(info.created_at),
        "updated_at": _iso(info.updated_at),
        "completed_at": _iso(info.completed_at),
        "wake_at": _iso(info.wake_at),
        "result": jsonable(info.result),
        "error_message": info.error_message,
        "events": info.last_seq,
        "parent_run_id": info.parent_run_id,
        "continued_from": info.continued_from,
        "continued_to": info.continued_to,
        "queue": info.queue,
        "priority": info.priority,
        "partition_key": info.partition_key,
        "admitted_at": _iso(info.admitted_at),
    }
    if events is not None:
        data["unknown_workflow"] = [note_json(note) for note in unknown_notes(events)]
    return data


def children_json(events: Sequence[Event], children: Sequence[Run]) -> list[dict[str, Any]]:
    """A parent's child runs as JSON: id, workflow, status now, parent-close policy.

    ``events`` is the parent's log (its ``child_workflow_started`` events give
    the policies); ``children`` the runs ``list_runs(parent=...)`` returns.
    """
    policies = {
        e.payload.get("child_run_id"): e.payload.get("policy")
        for e in events
        if e.type is EventType.CHILD_WORKFLOW_STARTED
    }
    return [
        {
            "run_id": r.run_id,
            "workflow": r.workflow_name,
            "status": r.status.value,
            "policy": policies.get(r.run_id, "request_cancel"),
        }
        for r in children
    ]


def started_children(events: Sequence[Event]) -> bool:
    """Whether the log shows that the run started child runs."""
    return any(e.type is EventType.CHILD_WORKFLOW_STARTED for e in events)


def event_json(event: Event) -> dict[str, Any]:
    """An event as JSON (the ``Event`` schema of the OpenAPI document).

    The payload is :func:`~pyworkflow.models.shown_payload` made JSON-safe; one
    that is not an object is wrapped as ``{"value": ...}``.
    """
    payload = jsonable(shown_payload(event))
    return {
        "run_id": event.run_id,
        "seq": event.seq,
        "type": event.type.value,
        "correlation_id": event.correlation_id,
        "timestamp": event.timestamp.isoformat(),
        "payload": payload if isinstance(payload, dict) else {"value": payload},
    }
