"""The row codec SQLite writes with: payload text and event rows as ``json.dumps`` wrote them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from pyworkflow.models import EventType, NewEvent
from pyworkflow.storage.rows import dump_payload, event_rows

PAYLOADS: list[dict[str, Any]] = [
    {},
    {"name": "inc", "attempt": 1, "input": '{"args":[0]}', "worker": "vm:1:a"},
    {"nested": {"list": [1, 2.5, None, True, False], "text": 'é\u2028"quoted"'}},
    {"nan": float("nan"), "inf": float("inf"), "big": 10**30},
    {"1": "key as text", "unicode": "日本"},
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_dump_payload_is_compact_json_dumps(payload: dict[str, Any]) -> None:
    expected = json.dumps(payload, separators=(",", ":"))
    assert dump_payload(payload) == expected
    assert dump_payload(MappingProxyType(payload)) == expected


def test_dump_payload_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dump_payload({"value": object()})


def test_event_rows_in_column_order() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    events = [
        NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"}, at),
        NewEvent(EventType.STEP_STARTED, None, MappingProxyType({"attempt": 1}), at),
    ]
    assert event_rows("run", 4, events) == [
        ("run", 5, "step_completed", "1", at.timestamp(), '{"result":"1"}'),
        ("run", 6, "step_started", None, at.timestamp(), '{"attempt":1}'),
    ]
