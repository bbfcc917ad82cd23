"""The one JSON shape of runs and events, and the OpenAPI schemas that describe it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs

from pyworkflow.client import RunInfo
from pyworkflow.jsonshape import event_json, jsonable, run_json
from pyworkflow.models import Event, EventType, RunStatus
from pyworkflow.server.openapi import openapi_document

NOW = datetime(2025, 1, 31, 10, 0, tzinfo=UTC)


@attrs.frozen
class Payment:
    amount: int
    at: datetime


def _info(**changes: Any) -> RunInfo:
    fields: dict[str, Any] = {
        "run_id": "r1",
        "workflow": "pay",
        "status": RunStatus.COMPLETED,
        "created_at": NOW,
        "updated_at": NOW,
        "completed_at": NOW,
        "result": Payment(3, NOW),
        "version": "2",
        "last_seq": 7,
    }
    return RunInfo(**(fields | changes))


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi_document()["components"]["schemas"][name]
    return schema


def test_a_run_as_json() -> None:
    assert run_json(_info()) == {
        "run_id": "r1",
        "workflow": "pay",
        "version": "2",
        "status": "completed",
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
        "completed_at": NOW.isoformat(),
        "wake_at": None,
        "result": {"amount": 3, "at": NOW.isoformat()},
        "error_message": None,
        "events": 7,
        "parent_run_id": None,
        "continued_from": None,
        "continued_to": None,
        "queue": None,
        "priority": 0,
        "partition_key": None,
        "admitted_at": None,
    }


def test_given_its_events_a_run_lists_unknown_workflow_notes() -> None:
    assert run_json(_info(), [])["unknown_workflow"] == []
    assert "unknown_workflow" not in run_json(_info())


def test_an_event_as_json_masks_old_secrets() -> None:
    event = Event("r1", 2, EventType.HOOK_CREATED, "3", NOW, {"token": "t", "secret": "s"})
    assert event_json(event) == {
        "run_id": "r1",
        "seq": 2,
        "type": "hook_created",
        "correlation_id": "3",
        "timestamp": NOW.isoformat(),
        "payload": {"token": "t", "secret": "***"},
    }


def test_values_with_no_json_form_are_shown_as_text() -> None:
    assert jsonable(float("nan")) == "nan"
    assert jsonable(object).startswith("<class")


def test_the_openapi_schemas_describe_the_shape() -> None:
    run = _schema("Run")
    data = run_json(_info(), [])
    assert set(run["properties"]) == set(data) | {"children"}  # children: runs that have some
    assert set(run["required"]) == set(data) - {"unknown_workflow"}
    event = _schema("Event")
    shown = event_json(Event("r1", 1, EventType.WORKFLOW_STARTED, None, NOW, {}))
    assert set(event["properties"]) == set(event["required"]) == set(shown)
