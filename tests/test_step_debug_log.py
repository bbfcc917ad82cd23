"""The per-step DEBUG line ('step completed') reaches a sink exactly when loguru would let it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

import pyworkflow
from pyworkflow import runtime, step, workflow
from pyworkflow.logs import debug_enabled, disable_logging, enable_logging

from .conftest import FAST


@step()
async def debug_double(value: int) -> int:
    return value * 2


@workflow
async def debug_flow(value: int) -> int:
    return await debug_double(value)


@pytest.fixture(autouse=True)
def _quiet_again() -> Iterator[None]:
    disable_logging()
    yield
    disable_logging()


def _completed_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["extra"] for r in records if r["message"] == "step completed"]


def _run(records: list[dict[str, Any]], level: str = "DEBUG") -> str:
    handler = logger.add(lambda m: records.append(m.record), level=level)
    try:
        runtime.configure(storage="memory://", **FAST)
        run_id = pyworkflow.start(debug_flow, 4)
        assert pyworkflow.get_result(run_id, timeout=20) == 8
        return run_id
    finally:
        logger.remove(handler)


def test_no_line_while_the_library_is_silent() -> None:
    records: list[dict[str, Any]] = []
    _run(records)
    assert _completed_lines(records) == []
    assert not debug_enabled("pyworkflow.stepexec")


def test_the_line_with_its_ids_once_loguru_enables_the_library() -> None:
    records: list[dict[str, Any]] = []
    logger.enable("pyworkflow")  # loguru's own switch, not enable_logging
    try:
        run_id = _run(records)
    finally:
        logger.disable("pyworkflow")
    assert _completed_lines(records) == [
        {"run_id": run_id, "step_id": "1", "step": "debug_double", "attempt": 1}
    ]


def test_no_line_when_no_sink_takes_debug() -> None:
    handler = enable_logging("INFO", sink=lambda _m: None)
    try:
        records: list[dict[str, Any]] = []
        _run(records, level="INFO")
        assert _completed_lines(records) == []
    finally:
        disable_logging(handler)


def test_enable_logging_at_debug_shows_it() -> None:
    records: list[dict[str, Any]] = []
    handler = enable_logging("DEBUG", sink=lambda m: records.append(m.record))
    try:
        runtime.configure(storage="memory://", **FAST)
        run_id = pyworkflow.start(debug_flow, 5)
        assert pyworkflow.get_result(run_id, timeout=20) == 10
    finally:
        disable_logging(handler)
    assert _completed_lines(records) == [
        {"run_id": run_id, "step_id": "1", "step": "debug_double", "attempt": 1}
    ]
