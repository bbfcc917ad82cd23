"""``[tool.pyworkflow.ray]`` options and what the executor hands its Ray tasks (no cluster)."""

from __future__ import annotations

import pytest
from pyworkflow_ray.executor import worker_env
from pyworkflow_ray.settings import RaySettings

from pyworkflow.config import Settings, load_settings
from pyworkflow.errors import ConfigError

SECRET_URL = "redis://:hunter2@cache.internal:6379/0"


def _settings(**ray: object) -> tuple[Settings, RaySettings]:
    settings = load_settings(
        overrides={"storage": SECRET_URL, "executor": "local", "ray": ray}, environ={}
    )
    return settings, RaySettings.from_settings(settings)


def test_the_storage_url_goes_to_the_ray_tasks_by_default() -> None:
    settings, options = _settings()
    assert options.forward_storage is True
    assert worker_env(settings, options)["PYWORKFLOW_STORAGE"] == SECRET_URL


def test_forward_storage_false_keeps_the_url_out_of_the_runtime_env() -> None:
    settings, options = _settings(forward_storage=False)
    env = worker_env(settings, options)
    assert "PYWORKFLOW_STORAGE" not in env
    assert all("hunter2" not in value for value in env.values())
    assert env["PYWORKFLOW_EXECUTOR"] == "ray"  # the rest still goes


@pytest.mark.parametrize("value", [1, "maybe", 0.0, []])
def test_forward_storage_refuses_what_is_not_a_boolean(value: object) -> None:
    with pytest.raises(ConfigError, match="forward_storage"):
        _settings(forward_storage=value)


def test_forward_storage_from_the_environment() -> None:
    settings = load_settings(
        overrides={"storage": SECRET_URL}, environ={"PYWORKFLOW_RAY__FORWARD_STORAGE": "false"}
    )
    assert RaySettings.from_settings(settings).forward_storage is False


def test_the_tracing_table_goes_to_the_ray_tasks() -> None:
    settings = load_settings(
        overrides={
            "storage": SECRET_URL,
            "tracing": {"enabled": True, "endpoint": "http://otel:4318/v1/traces"},
        },
        environ={},
    )
    env = worker_env(settings, RaySettings.from_settings(settings))
    assert env["PYWORKFLOW_TRACING__ENABLED"] == "true"
    assert env["PYWORKFLOW_TRACING__ENDPOINT"] == "http://otel:4318/v1/traces"
    reread = load_settings(overrides={}, environ=env)
    assert reread.plugin_tables["tracing"] == {
        "enabled": "true",
        "endpoint": "http://otel:4318/v1/traces",
    }


def test_the_log_level_goes_to_the_ray_workers_when_set() -> None:
    settings, options = _settings()
    assert "PYWORKFLOW_LOG_LEVEL" not in worker_env(settings, options)  # their default: WARNING
    settings = load_settings(
        overrides={"storage": SECRET_URL, "log_level": "DEBUG"}, environ={}
    )
    assert worker_env(settings, RaySettings.from_settings(settings))["PYWORKFLOW_LOG_LEVEL"] == (
        "DEBUG"
    )
