"""The pytest plugin shipped with PyWorkflow: the workflow_env fixture in async and sync tests."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

APP_TESTS = """
from datetime import UTC, datetime, timedelta

import pytest

import pyworkflow
from pyworkflow import create_hook, first, sleep, workflow
from pyworkflow.testing import WorkflowEnvironment

START = datetime(2031, 5, 1, tzinfo=UTC)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def workflow_env_options():
    return {"start": START}


@workflow
async def reminder(name):
    hook = create_hook(f"ack:{name}")
    index, _ = await first(hook, sleep("7d"))
    return "acked" if index == 0 else "reminded"


@pytest.mark.anyio
async def test_async(workflow_env):
    assert isinstance(workflow_env, WorkflowEnvironment)
    assert await workflow_env.run(reminder, "a") == "reminded"
    assert workflow_env.now() == START + timedelta(days=7)


def test_sync(workflow_env):
    run_id = workflow_env.sync.start(reminder, "b")
    workflow_env.sync.resume_hook("ack:b", None)
    assert workflow_env.sync.result(run_id) == "acked"
    assert workflow_env.now() == START


def test_each_test_gets_a_fresh_environment(workflow_env):
    assert workflow_env.now() == START
    with pytest.raises(pyworkflow.RunNotFoundError):
        workflow_env.sync.get_run("a-run-of-another-test")
"""


def test_workflow_env_fixture_serves_async_and_sync_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=APP_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)


def test_the_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("pyworkflow") == "pyworkflow.testing.pytest_plugin"
