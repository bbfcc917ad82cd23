"""Event limits: a soft limit warns once per run, a hard limit fails the run (issue 20).

Small limits (a soft limit of 20 events, a hard one of 60) on the harness, and
on SQLite for the retry. Defaults (10,000 / 50,000) never bite a 1,000-step run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pyworkflow
from pyworkflow import (
    ConfigError,
    EventLimitError,
    EventType,
    RunStatus,
    continue_as_new,
    runtime,
    sleep,
    step,
    workflow,
)
from pyworkflow.cli import app
from pyworkflow.client import retry_run
from pyworkflow.config import Settings, load_settings
from pyworkflow.logs import disable_logging, enable_logging
from pyworkflow.models import Event
from pyworkflow.testing import WorkflowEnvironment

SOFT, HARD = 20, 60


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    """The WARNING+ records PyWorkflow logs meanwhile: message and bound fields."""
    records: list[dict[str, Any]] = []

    def sink(message: Any) -> None:
        record = message.record
        records.append({"message": record["message"], **record["extra"]})

    handler = enable_logging("WARNING", sink=sink)
    yield records
    disable_logging(handler)


def limit_warnings(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "event_soft_limit" in r]


@step()
async def el_work(i: int) -> int:
    return i


@workflow
async def el_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += await el_work(i)
    return total


@workflow
async def el_sleepy(n: int) -> int:
    for _ in range(n):
        await sleep("1m")  # each a suspension: wait_created, suspended, resumed, completed
    return n


@workflow
async def el_chain(left: int) -> int:
    for i in range(10):
        await el_work(i)
    if left > 0:
        continue_as_new(left - 1)
    return left


def check_nothing_half_recorded(events: list[Event]) -> None:
    """Every step started has its outcome; seqs are dense; the run's end is last."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    started = {e.correlation_id for e in events if e.type == EventType.STEP_STARTED}
    done = {e.correlation_id for e in events if e.type == EventType.STEP_COMPLETED}
    assert started == done
    assert events[-1].type == EventType.WORKFLOW_FAILED


@pytest.mark.anyio
async def test_the_soft_limit_warns_once_and_the_run_completes(
    warnings: list[dict[str, Any]],
) -> None:
    async with WorkflowEnvironment(event_soft_limit=SOFT, event_hard_limit=HARD) as env:
        run_id = await env.start(el_loop, 20)  # 1 + 2 * 20 + 1 events
        assert await env.result(run_id) == sum(range(20))
        assert len(await env.events(run_id)) == 42
    (warned,) = limit_warnings(warnings)
    assert warned["run_id"] == run_id and warned["workflow"] == "el_loop"
    assert warned["event_soft_limit"] == SOFT and warned["events"] > SOFT
    assert run_id in warned["message"] and "continue_as_new()" in warned["message"]


@pytest.mark.anyio
async def test_the_hard_limit_fails_the_run_with_a_clear_error(
    warnings: list[dict[str, Any]],
) -> None:
    async with WorkflowEnvironment(event_soft_limit=SOFT, event_hard_limit=HARD) as env:
        run_id = await env.start(el_loop, 1000)
        with pytest.raises(EventLimitError) as info:
            await env.result(run_id)
        events = await env.events(run_id)
        info_run = await env.get_run(run_id)
    error = info.value
    assert error.run_id == run_id and error.limit == HARD
    assert HARD < error.events <= HARD + 2  # a step's outcome and the next step's start
    assert f"event_hard_limit = {HARD}" in str(error) and "continue_as_new()" in str(error)
    assert info_run.status == RunStatus.FAILED
    assert (info_run.error_message or "").startswith("EventLimitError: ")
    assert events[-1].payload["event_limit"] == HARD
    # the append that would pass the limit was not made: the failure replaced it, keeping
    # the outcome of the step that had run (the next step's start was dropped: it never ran)
    assert len(events) == HARD + 2
    assert [e.type for e in events[-2:]] == [EventType.STEP_COMPLETED, EventType.WORKFLOW_FAILED]
    check_nothing_half_recorded(events)
    assert len(limit_warnings(warnings)) == 1  # warned once, before failing


@pytest.mark.anyio
async def test_the_hard_limit_holds_for_a_run_that_suspends() -> None:
    async with WorkflowEnvironment(event_soft_limit=SOFT, event_hard_limit=HARD) as env:
        run_id = await env.start(el_sleepy, 100)
        with pytest.raises(EventLimitError):
            await env.result(run_id)
        events = await env.events(run_id)
    assert HARD - 4 < len(events) <= HARD + 1
    assert events[-1].type == EventType.WORKFLOW_FAILED


@pytest.mark.anyio
async def test_continue_as_new_keeps_each_log_under_the_limits(
    warnings: list[dict[str, Any]],
) -> None:
    async with WorkflowEnvironment(event_soft_limit=30, event_hard_limit=HARD) as env:
        assert await env.run(el_chain, 5) == 0  # 6 runs of 10 steps: 60 steps, 6 short logs
    assert limit_warnings(warnings) == []


@pytest.mark.anyio
async def test_the_defaults_leave_a_1000_step_run_alone(warnings: list[dict[str, Any]]) -> None:
    async with WorkflowEnvironment() as env:
        assert await env.run(el_loop, 1000) == sum(range(1000))
    assert limit_warnings(warnings) == []
    assert Settings().event_soft_limit == 10_000 and Settings().event_hard_limit == 50_000


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    runtime.reset()
    yield f"sqlite:///{tmp_path / 'pw.db'}"
    runtime.reset()


def test_retrying_fails_again_until_the_limit_is_raised(sqlite_url: str) -> None:
    runtime.configure(storage=sqlite_url, event_soft_limit=SOFT, event_hard_limit=HARD)
    run_id = pyworkflow.start(el_loop, 40)  # 82 events in all
    with pytest.raises(EventLimitError):
        pyworkflow.get_result(run_id, timeout=20)
    first = len(pyworkflow.get_events(run_id))
    assert retry_run(run_id) is True
    with pytest.raises(EventLimitError):  # the log is as long as before: it fails again
        pyworkflow.get_result(run_id, timeout=20)
    events = pyworkflow.get_events(run_id)
    kinds = [e.type for e in events[first:]]
    assert kinds[0] == EventType.WORKFLOW_RETRIED and kinds[-1] == EventType.WORKFLOW_FAILED
    assert EventType.STEP_STARTED not in kinds  # nothing new ran
    runtime.reset()
    runtime.configure(storage=sqlite_url, event_soft_limit=SOFT, event_hard_limit=1000)
    assert retry_run(run_id) is True
    assert pyworkflow.get_result(run_id, timeout=20) == sum(range(40))
    completed = [e for e in pyworkflow.get_events(run_id) if e.type == EventType.STEP_COMPLETED]
    assert len(completed) == 40  # the steps done before the failure were not run again
    assert len({e.correlation_id for e in completed}) == 40
    # an operator sees it too (the CLI configures its own runtime: last)
    shown = CliRunner().invoke(app, ["--storage", sqlite_url, "runs", "show", run_id])
    assert f"events: {len(pyworkflow.get_events(run_id))}, past event_soft_limit ({SOFT})" in (
        shown.output
    ), shown.output


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"event_soft_limit": 100, "event_hard_limit": 100}, "must be below 'event_hard_limit'"),
        ({"event_soft_limit": 60_000}, "must be below 'event_hard_limit' (50000, from default)"),
        ({"event_hard_limit": 0}, "must be a positive integer"),
        ({"event_soft_limit": "100"}, "must be a positive integer"),
        ({"event_hard_limit": True}, "must be a positive integer"),
        ({"event_hard_limit": 1.5}, "must be a positive integer"),
    ],
)
def test_bad_limits_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="event_") as info:
        load_settings(settings, environ={})
    assert message in str(info.value)


def test_limits_come_from_pyproject_and_env(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.pyworkflow]\nevent_soft_limit = 500\nevent_hard_limit = 2_000\n"
    )
    settings = load_settings(cwd=tmp_path, environ={})
    assert (settings.event_soft_limit, settings.event_hard_limit) == (500, 2000)
    env = {"PYWORKFLOW_EVENT_HARD_LIMIT": "400"}
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, environ=env)
    assert "'event_soft_limit' (500, from pyproject.toml" in str(info.value)
    env["PYWORKFLOW_EVENT_SOFT_LIMIT"] = "300"
    assert load_settings(cwd=tmp_path, environ=env).event_hard_limit == 400
