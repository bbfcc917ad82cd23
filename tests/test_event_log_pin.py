"""The event log of a small workflow, pinned: types, ids and payloads as written.

The engine's per-step path is tuned for speed; this pins what it writes so a
faster path cannot change the log. Values that depend on the clock or on
where the code runs (timestamps, ``due_at``, ``delay``, ``worker``, an
error's traceback text) are replaced by markers; everything else is compared
byte for byte (user values are serialized strings).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import pyworkflow
from pyworkflow import runtime, step, workflow

from .conftest import FAST

_calls: dict[str, int] = {}


@step()
async def pin_add(a: int, b: int = 0) -> int:
    return a + b


@step()
def pin_shape(value: int) -> dict[str, Any]:
    return {"n": value, "pair": (value, "x"), "tags": {1, 2}, "none": None, "f": 1.5}


@step(max_retries=2, retry_base="10ms", jitter=0.0)
async def pin_flaky(key: str) -> str:
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] == 1:
        raise ValueError(f"first try of {key}")
    return f"ok {key}"


@step(max_retries=0)
async def pin_broken() -> None:
    raise KeyError("nope")


@workflow
async def pinned(n: int) -> list[Any]:
    first = await pin_add(n, b=2)
    both = await asyncio.gather(pin_add(first), pin_add(first, 1))
    shaped = await pin_shape(both[1])
    await pyworkflow.sleep("10ms")
    again = await pin_flaky("k")
    try:
        await pin_broken()
    except KeyError:
        pass
    return [first, list(both), shaped["n"], again, "é"]


def _normal(event: Any) -> tuple[Any, ...]:
    payload = dict(event.payload)
    for key in ("due_at", "delay", "worker", "wake_at"):
        if key in payload:
            payload[key] = "<" + key + ">"
    if "error" in payload:
        error = json.loads(payload["error"])
        error.pop("traceback", None)
        payload["error"] = list(error.items())  # key order too
    return (event.seq, event.type.value, event.correlation_id, payload)


EXPECTED: list[tuple[Any, ...]] = [
    (1, "workflow_started", None, {"workflow": "pinned", "version": None}),
    (
        2,
        "step_started",
        "1",
        {
            "name": "pin_add",
            "attempt": 1,
            "input": '{"args":{"__pw__":"tuple","v":[5]},"kwargs":{"b":2}}',
            "worker": "<worker>",
        },
    ),
    (3, "step_completed", "1", {"name": "pin_add", "attempt": 1, "result": "7"}),
    (
        4,
        "step_started",
        "2",
        {
            "name": "pin_add",
            "attempt": 1,
            "input": '{"args":{"__pw__":"tuple","v":[7]},"kwargs":{}}',
            "worker": "<worker>",
        },
    ),
    (
        5,
        "step_started",
        "3",
        {
            "name": "pin_add",
            "attempt": 1,
            "input": '{"args":{"__pw__":"tuple","v":[7,1]},"kwargs":{}}',
            "worker": "<worker>",
        },
    ),
    (6, "step_completed", "2", {"name": "pin_add", "attempt": 1, "result": "7"}),
    (7, "step_completed", "3", {"name": "pin_add", "attempt": 1, "result": "8"}),
    (
        8,
        "step_started",
        "4",
        {
            "name": "pin_shape",
            "attempt": 1,
            "input": '{"args":{"__pw__":"tuple","v":[8]},"kwargs":{}}',
            "worker": "<worker>",
        },
    ),
    (
        9,
        "step_completed",
        "4",
        {
            "name": "pin_shape",
            "attempt": 1,
            "result": '{"n":8,"pair":{"__pw__":"tuple","v":[8,"x"]},'
            '"tags":{"__pw__":"set","v":[1,2]},"none":null,"f":1.5}',
        },
    ),
    (10, "wait_created", "5", {"name": "sleep", "due_at": "<due_at>"}),
    (11, "workflow_suspended", None, {"wake_at": "<wake_at>"}),
    (12, "workflow_resumed", None, {}),
    (13, "wait_completed", "5", {"name": "sleep"}),
    (
        14,
        "step_started",
        "6",
        {
            "name": "pin_flaky",
            "attempt": 1,
            "input": '{"args":{"__pw__":"tuple","v":["k"]},"kwargs":{}}',
            "worker": "<worker>",
        },
    ),
    (
        15,
        "step_retrying",
        "6",
        {
            "name": "pin_flaky",
            "attempt": 1,
            "error": [
                ("__pw__", "exception"),
                ("t", "builtins:ValueError"),
                ("args", ["first try of k"]),
                ("message", "first try of k"),
                ("state", {}),
            ],
            "error_message": "ValueError: first try of k",
            "delay": "<delay>",
            "due_at": "<due_at>",
        },
    ),
    (16, "workflow_suspended", None, {"wake_at": "<wake_at>"}),
    (17, "workflow_resumed", None, {}),
    (
        18,
        "step_started",
        "6",
        {
            "name": "pin_flaky",
            "attempt": 2,
            "input": '{"args":{"__pw__":"tuple","v":["k"]},"kwargs":{}}',
            "worker": "<worker>",
        },
    ),
    (19, "step_completed", "6", {"name": "pin_flaky", "attempt": 2, "result": '"ok k"'}),
    (
        20,
        "step_started",
        "7",
        {
            "name": "pin_broken",
            "attempt": 1,
            "input": '{"args":{"__pw__":"tuple","v":[]},"kwargs":{}}',
            "worker": "<worker>",
        },
    ),
    (
        21,
        "step_failed",
        "7",
        {
            "name": "pin_broken",
            "attempt": 1,
            "error": [
                ("__pw__", "exception"),
                ("t", "builtins:KeyError"),
                ("args", ["nope"]),
                ("message", "'nope'"),
                ("state", {}),
            ],
            "error_message": "KeyError: 'nope'",
        },
    ),
    (22, "workflow_completed", None, {"result": '[7,[7,8],8,"ok k","\\u00e9"]'}),
]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_event_log_of_a_small_workflow_is_pinned(backend: str, tmp_path: Path) -> None:
    _calls.clear()
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'pw.db'}"
    runtime.configure(storage=url, **FAST)
    run_id = pyworkflow.start(pinned, 5)
    assert pyworkflow.get_result(run_id, timeout=30) == [7, [7, 8], 8, "ok k", "é"]
    events = [_normal(e) for e in pyworkflow.get_events(run_id)]
    # the two gathered steps may finish in either order: that stretch sorted by id
    events[5:7] = sorted(events[5:7], key=lambda e: str(e[2]))
    events[5:7] = [(seq, *rest) for seq, (_, *rest) in zip((6, 7), events[5:7], strict=True)]
    assert [e[1:3] for e in events] == [e[1:3] for e in EXPECTED]
    for got, want in zip(events, EXPECTED, strict=True):
        assert got == want
