"""The plugin's registration, options and Celery configuration (no servers needed)."""

from __future__ import annotations

import pytest
from pyworkflow_celery import CeleryExecutor, CelerySettings
from pyworkflow_celery.app import ACTIVATE, STEP, SWEEP, create_app

import pyworkflow
from pyworkflow import plugins
from pyworkflow.config import load_settings
from pyworkflow.errors import ConfigError


def test_the_entry_point_registers_the_celery_executor() -> None:
    assert "celery" in plugins.executor_names()
    executor = plugins.create_executor("celery", load_settings({}))
    assert isinstance(executor, CeleryExecutor)
    assert executor.dispatches_steps


def test_options_come_from_the_plugin_table_and_the_environment() -> None:
    settings = load_settings(
        {"celery": {"step_queue": "steps", "sweep_interval": 2}},
        environ={"PYWORKFLOW_CELERY__BROKER_URL": "redis://10.0.0.1:6380/2"},
    )
    options = CelerySettings.from_settings(settings)
    assert options.broker_url == "redis://10.0.0.1:6380/2"
    assert options.step_queue == "steps"
    assert options.sweep_interval == 2.0
    assert options.workflow_queue == "pyworkflow.workflows"
    assert settings.source_of("celery.broker_url") == "env PYWORKFLOW_CELERY__BROKER_URL"


def test_unknown_option_is_an_error_listing_the_valid_ones() -> None:
    settings = load_settings({"celery": {"brokr_url": "redis://x"}})
    with pytest.raises(ConfigError, match=r"unknown option 'brokr_url'.*broker_url"):
        CelerySettings.from_settings(settings)


def test_bad_value_names_the_option() -> None:
    settings = load_settings({"celery": {"sweep_interval": "soon"}})
    with pytest.raises(ConfigError, match=r"'sweep_interval'.*positive number of seconds"):
        CelerySettings.from_settings(settings)


def test_the_app_is_json_only_with_two_queues_and_a_sweep_schedule() -> None:
    settings = load_settings(
        {"celery": {"workflow_queue": "wf", "step_queue": "st", "sweep_interval": 3}}
    )
    app = create_app(settings)
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    routes = app.conf.task_routes
    assert routes[ACTIVATE]["queue"] == "wf" and routes[SWEEP]["queue"] == "wf"
    assert routes[STEP]["queue"] == "st"
    # a worker started without -Q consumes both queues (issue 12, finding 10)
    assert set(app.amqp.queues.consume_from) == {"wf", "st"}
    assert app.conf.beat_schedule["pyworkflow-sweep"]["schedule"] == 3.0
    assert {ACTIVATE, STEP, SWEEP} <= set(app.tasks)


def test_the_seed_spelling_of_the_app_is_the_plugin_app() -> None:
    from pyworkflow_celery.app import app

    from pyworkflow.celery.app import app as seed_app

    assert seed_app is app


def test_a_step_defined_inside_a_function_cannot_be_dispatched() -> None:
    @pyworkflow.step()
    async def local_step() -> int:
        return 1

    from pyworkflow.step import check_dispatchable

    with pytest.raises(TypeError, match="defined inside a function"):
        check_dispatchable(local_step.definition, local_step.fn)


def test_lone_steps_run_inline_only_on_workers_that_consume_the_step_queue() -> None:
    executor = CeleryExecutor(load_settings({}))
    assert executor.inline_lone_steps  # inline_steps is on by default
    executor.worker_started("flows@host", {"pyworkflow.workflows"})  # -Q pyworkflow.workflows
    assert not executor.inline_lone_steps
    assert executor.worker_name == "flows@host"

    executor = CeleryExecutor(load_settings({}))
    executor.worker_started("w1@host", {"pyworkflow.workflows", "pyworkflow.steps"})
    assert executor.inline_lone_steps

    executor = CeleryExecutor(load_settings({"celery": {"inline_steps": False}}))
    executor.worker_started("w1@host", {"pyworkflow.workflows", "pyworkflow.steps"})
    assert not executor.inline_lone_steps
