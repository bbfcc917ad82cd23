"""Strict hook schemas end to end: ``resume_hook()``, ``POST /hooks/{token}`` and the CLI."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import pyworkflow
from pyworkflow import (
    EventType,
    PayloadValidationError,
    RunStatus,
    get_events,
    get_result,
    get_run,
    resume_hook,
    start,
)
from tests import validation_workflows as vw
from tests.conftest import FAST
from tests.server.conftest import ServerFactory, make_server  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]

#: The issue's examples: each would have become ``Decision(approved=True, ...)`` or similar.
COERCED = [
    ({"approved": "no", "by": "mallory"}, '$.approved: expected bool, got str "no"'),
    ({"approved": "false", "by": "mallory"}, '$.approved: expected bool, got str "false"'),
    ({"approved": 0.5, "by": "mallory"}, "$.approved: expected bool, got float 0.5"),
    ({"approved": True, "by": ["a"]}, '$.by: expected str, got list ["a"]'),
    ({"approved": True, "by": {"x": 1}}, '$.by: expected str, got dict {"x": 1}'),
    ({"approved": True, "by": "ana", "admin": True}, "$.admin: unexpected field"),
    ({"approved": True}, "$.by: required field missing"),
]


def wait_status(run_id: str, status: RunStatus, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (current := get_run(run_id).status) != status:
        assert time.monotonic() < deadline, f"run {run_id} is {current}, not {status}"
        time.sleep(0.02)


def hook_created(run_id: str) -> dict[str, Any]:
    [event] = [e for e in get_events(run_id) if e.type == EventType.HOOK_CREATED]
    return dict(event.payload)


def test_resume_hook_refuses_coerced_payloads_and_records_nothing(pw: str) -> None:
    run_id = start(vw.decide, "decide:1")
    wait_status(run_id, RunStatus.SUSPENDED)
    assert hook_created(run_id)["schema"] == "tests.validation_workflows:Decision"
    before = get_events(run_id)
    for payload, line in COERCED:
        with pytest.raises(PayloadValidationError) as info:
            resume_hook("decide:1", payload)
        assert any(error.startswith(line) for error in info.value.errors), info.value.errors
        assert "Decision" in str(info.value)
    assert get_events(run_id) == before
    assert get_run(run_id).status == RunStatus.SUSPENDED

    resume_hook("decide:1", {"approved": False, "by": "ana"})
    result = get_result(run_id, timeout=10)
    assert result == {"is_decision": True, "decision": vw.Decision(approved=False, by="ana")}


@pytest.mark.parametrize(
    ("schema", "ref", "bad", "good", "expected"),
    [
        ("list[str]", "list[str]", ["a", 1], ["a", "b"], ["a", "b"]),
        ("dict[str, int]", "dict[str, int]", {"a": True}, {"a": 1}, {"a": 1}),
        ("Literal", 'Literal["yes", "no"]', "maybe", "no", "no"),
        (
            "Optional[Point]",
            "Union[tests.validation_workflows:Point, None]",
            {"x": 1, "y": "2"},
            {"x": 1, "y": 2},
            vw.Point(1, 2),
        ),
        (
            "Order",
            "tests.validation_workflows:Order",
            {"id": 1, "qty": 1},
            {"id": "o", "qty": 1},
            {"id": "o", "qty": 1},
        ),
        (
            "Meeting",
            "tests.validation_workflows:Meeting",
            {"title": "t", "seats": "2", "length": 1, "attendees": []},
            {"title": "t", "seats": 2, "length": 1, "attendees": [{"name": "ana", "vip": True}]},
            vw.Meeting(
                title="t", seats=2, length=1.0, attendees=[vw.Attendee(name="ana", vip=True)]
            ),
        ),
        (
            "Stamped",
            "tests.validation_workflows:Stamped",
            {"when": 1, "day": "x", "at": "x", "wait": 5, "id": "x", "amount": "x"},
            {
                "when": "2024-05-01T10:00:00+00:00",
                "day": "2024-05-01",
                "at": "10:00:00",
                "wait": "PT90S",
                "id": "12345678-1234-5678-1234-567812345678",
                "amount": "9.99",
            },
            vw.Stamped(
                dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC),
                dt.date(2024, 5, 1),
                dt.time(10),
                dt.timedelta(seconds=90),
                uuid.UUID("12345678-1234-5678-1234-567812345678"),
                decimal.Decimal("9.99"),
            ),
        ),
        ("Color", "tests.validation_workflows:Color", "RED", "green", vw.Color.GREEN),
    ],
)
def test_every_schema_kind_through_a_run(
    schema: str, ref: str, bad: Any, good: Any, expected: Any
) -> None:
    pyworkflow.configure(storage="memory://", **FAST)
    token = f"typed:{schema}"
    run_id = start(vw.typed, token, schema)
    wait_status(run_id, RunStatus.SUSPENDED)
    assert hook_created(run_id)["schema"] == ref
    before = get_events(run_id)
    with pytest.raises(PayloadValidationError):
        resume_hook(token, bad)
    assert get_events(run_id) == before
    resume_hook(token, good)
    result = get_result(run_id, timeout=10)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("workflow", "match"),
    [(vw.local_schema, "define it at module level"), (vw.unsupported_schema, "bytes")],
)
def test_a_schema_that_cannot_be_recorded_fails_at_create_hook(workflow: Any, match: str) -> None:
    pyworkflow.configure(storage="memory://", **FAST)
    run_id = start(workflow, "never")
    with pytest.raises(Exception, match=match):
        get_result(run_id, timeout=10)
    assert get_run(run_id).status == RunStatus.FAILED
    assert not [e for e in get_events(run_id) if e.type == EventType.HOOK_CREATED]
    with pytest.raises(pyworkflow.HookNotFoundError):
        resume_hook("never", {"x": 1})


# ----- over HTTP -----


def test_http_post_answers_422_with_errors_and_records_nothing(
    request: pytest.FixtureRequest,
) -> None:
    make: ServerFactory = request.getfixturevalue("make_server")
    base = make()
    run_id = start(vw.decide, "decide:http")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    with httpx.Client(base_url=base, timeout=10) as http:
        for payload, line in COERCED:
            response = http.post("/hooks/decide:http", json=payload)
            assert response.status_code == 422, (payload, response.text)
            body = response.json()
            assert any(error.startswith(line) for error in body["errors"]), body
            assert body["detail"].startswith("payload does not fit Decision: ")
        assert get_events(run_id) == before
        assert get_run(run_id).status == RunStatus.SUSPENDED

        ok = http.post("/hooks/decide:http", json={"approved": False, "by": "ana"})
        assert ok.status_code == 202, ok.text
    result = get_result(run_id, timeout=10)
    assert result == {"is_decision": True, "decision": vw.Decision(approved=False, by="ana")}


# ----- from the command line -----


@pytest.mark.slow
def test_cli_hooks_resume_refuses_then_delivers(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'pw.db'}"
    pyworkflow.configure(storage=storage, **FAST)
    run_id = start(vw.decide, "decide:cli")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)

    def cli(payload: Any) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        env.update(PYWORKFLOW_STORAGE=storage, PYWORKFLOW_POLL_INTERVAL="0.05")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        args = ["hooks", "resume", "decide:cli", "--data", json.dumps(payload), "--json"]
        return subprocess.run(
            [sys.executable, "-m", "pyworkflow", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = cli({"approved": "no", "by": "mallory"})
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert '$.approved: expected bool, got str "no"' in refused.stderr
    assert "Traceback" not in refused.stderr
    assert get_events(run_id) == before

    delivered = cli({"approved": False, "by": "ana"})
    assert delivered.returncode == 0, delivered.stderr
    assert json.loads(delivered.stdout)["run_id"] == run_id
    result = get_result(run_id, timeout=20)
    assert result == {"is_decision": True, "decision": vw.Decision(approved=False, by="ana")}
