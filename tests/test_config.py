"""Settings layering: defaults < [tool.pyworkflow] < PYWORKFLOW_* < configure()."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from pyworkflow.config import KEYS, Settings, find_pyproject, load_settings
from pyworkflow.errors import ConfigError


def write_pyproject(directory: Path, body: str) -> Path:
    path = directory / "pyproject.toml"
    path.write_text(body)
    return path


def test_defaults_without_pyproject_or_env(tmp_path: Path) -> None:
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings == Settings()
    assert settings.storage == "sqlite:///.pyworkflow/pyworkflow.db"
    assert settings.executor == "local"
    assert settings.serializer == "json"
    assert settings.max_payload_bytes == 2 * 1024 * 1024
    assert settings.embedded_worker is True
    assert settings.plugin_tables == {}
    assert all(settings.sources[key] == "default" for key in KEYS)


def test_keys_are_the_settings_fields() -> None:
    fields = {field.name for field in attrs.fields(Settings)}
    assert set(KEYS) == fields - {"plugin_tables", "sources"}
    assert list(KEYS) == sorted(KEYS)


def test_precedence_pyproject_env_overrides(tmp_path: Path) -> None:
    path = write_pyproject(
        tmp_path,
        '[tool.pyworkflow]\nstorage = "memory://"\nexecutor = "celery"\nserializer = "pickle"\n'
        "poll_interval = 0.5\n",
    )
    environ = {"PYWORKFLOW_EXECUTOR": "ray", "PYWORKFLOW_SERIALIZER": "json", "HOME": "/x"}
    settings = load_settings({"serializer": "custom"}, cwd=tmp_path, environ=environ)

    assert settings.storage == "memory://"
    assert settings.executor == "ray"
    assert settings.serializer == "custom"
    assert settings.poll_interval == 0.5
    assert settings.sources["storage"] == f"pyproject.toml ({path})"
    assert settings.sources["executor"] == "env PYWORKFLOW_EXECUTOR"
    assert settings.sources["serializer"] == "configure()"
    assert settings.sources["lease_seconds"] == "default"
    assert settings.source_of("executor") == "env PYWORKFLOW_EXECUTOR"


def test_nearest_pyproject_walking_up(tmp_path: Path) -> None:
    write_pyproject(tmp_path, '[tool.pyworkflow]\nexecutor = "outer"\n')
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    assert find_pyproject(inner) == tmp_path / "pyproject.toml"
    assert load_settings(cwd=inner, environ={}).executor == "outer"

    # The nearest pyproject.toml wins even without a [tool.pyworkflow] table.
    write_pyproject(tmp_path / "a", '[project]\nname = "other"\n')
    assert load_settings(cwd=inner, environ={}).executor == "local"


def test_default_cwd_and_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pyproject(tmp_path, "[tool.pyworkflow]\nworker_concurrency = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYWORKFLOW_DRAIN_TIMEOUT", "0")
    settings = load_settings()
    assert settings.worker_concurrency == 3
    assert settings.drain_timeout == 0.0


def test_env_parsing(tmp_path: Path) -> None:
    environ = {
        "PYWORKFLOW_MODULES": "app.flows, app.more ,",
        "PYWORKFLOW_MAX_PAYLOAD_BYTES": "1000",
        "PYWORKFLOW_EMBEDDED_WORKER": "0",
        "PYWORKFLOW_LEASE_SECONDS": "2.5",
        "PYWORKFLOW_SQLITE_SYNCHRONOUS": "normal",
        "PYWORKFLOW_PUBLIC_URL": "https://example.com",
        "PYWORKFLOW_LOG_LEVEL": "",
    }
    settings = load_settings(cwd=tmp_path, environ=environ)
    assert settings.modules == ("app.flows", "app.more")
    assert settings.max_payload_bytes == 1000
    assert settings.embedded_worker is False
    assert settings.lease_seconds == 2.5
    assert settings.sqlite_synchronous == "NORMAL"
    assert settings.public_url == "https://example.com"
    assert settings.log_level is None
    for value, expected in [("1", True), ("true", True), ("FALSE", False), ("off", False)]:
        env = {"PYWORKFLOW_EMBEDDED_WORKER": value}
        assert load_settings(cwd=tmp_path, environ=env).embedded_worker is expected


def test_modules_from_pyproject_and_overrides(tmp_path: Path) -> None:
    write_pyproject(tmp_path, '[tool.pyworkflow]\nmodules = ["a.b", "c"]\n')
    assert load_settings(cwd=tmp_path, environ={}).modules == ("a.b", "c")
    assert load_settings({"modules": ["x"]}, cwd=tmp_path, environ={}).modules == ("x",)


def test_relative_sqlite_path_is_not_rewritten(tmp_path: Path) -> None:
    settings = load_settings({"storage": "sqlite:///data/pw.db"}, cwd=tmp_path, environ={})
    assert settings.storage == "sqlite:///data/pw.db"


def test_unknown_key_in_pyproject_lists_valid_keys(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, '[tool.pyworkflow]\nstorag = "memory://"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, environ={})
    message = str(info.value)
    assert "'storag'" in message
    assert str(path) in message
    assert "did you mean 'storage'?" in message
    assert "valid keys: " + ", ".join(sorted(KEYS)) in message


def test_unknown_key_in_env(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, environ={"PYWORKFLOW_CELERY_BROKER": "redis://"})
    message = str(info.value)
    assert "'celery_broker'" in message
    assert "PYWORKFLOW_CELERY_BROKER" in message
    assert "executor, lease_seconds, log_level" in message


def test_unknown_key_in_overrides(tmp_path: Path) -> None:
    match = r"'nope' passed to configure\(\).*valid keys: .*drain_timeout"
    with pytest.raises(ConfigError, match=match):
        load_settings({"nope": 1}, cwd=tmp_path, environ={})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_payload_bytes", '"big"', "a positive integer"),
        ("max_payload_bytes", "true", "a positive integer"),
        ("worker_concurrency", "0", "a positive integer"),
        ("embedded_worker", '"yes"', "a boolean"),
        ("lease_seconds", '"soon"', "a positive number of seconds"),
        ("storage", "3", "a non-empty string"),
        ("modules", "[1, 2]", "a list of module names"),
        ("sqlite_synchronous", '"OFF"', "one of FULL, NORMAL"),
    ],
)
def test_wrong_type_in_pyproject(tmp_path: Path, key: str, value: str, expected: str) -> None:
    path = write_pyproject(tmp_path, f"[tool.pyworkflow]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, environ={})
    message = str(info.value)
    assert f"config key {key!r} (from pyproject.toml ({path}))" in message
    assert expected in message


def test_wrong_type_in_env_and_overrides(tmp_path: Path) -> None:
    env = {"PYWORKFLOW_MAX_PAYLOAD_BYTES": "big"}
    with pytest.raises(ConfigError, match=r"'max_payload_bytes' \(from env PYWORKFLOW_MAX_PAYLOAD"):
        load_settings(cwd=tmp_path, environ=env)
    with pytest.raises(ConfigError, match=r"'embedded_worker' \(from env .*a boolean"):
        load_settings(cwd=tmp_path, environ={"PYWORKFLOW_EMBEDDED_WORKER": "maybe"})
    with pytest.raises(ConfigError, match=r"'poll_interval' \(from configure\(\)\) must be a"):
        load_settings({"poll_interval": "fast"}, cwd=tmp_path, environ={})


def test_sqlite_synchronous_validated_on_direct_construction() -> None:
    with pytest.raises(ConfigError, match="sqlite_synchronous"):
        Settings(sqlite_synchronous="OFF")


def test_sub_tables_go_to_plugin_tables(tmp_path: Path) -> None:
    path = write_pyproject(
        tmp_path,
        '[tool.pyworkflow]\nexecutor = "celery"\n\n'
        '[tool.pyworkflow.celery]\nbroker_url = "redis://localhost"\nqueues = 2\n',
    )
    settings = load_settings(
        {"celery": {"queues": 3}, "ray": {"address": "auto"}}, cwd=tmp_path, environ={}
    )
    assert settings.plugin_tables == {
        "celery": {"broker_url": "redis://localhost", "queues": 3},
        "ray": {"address": "auto"},
    }
    assert settings.sources["celery.broker_url"] == f"pyproject.toml ({path})"
    assert settings.sources["celery.queues"] == "configure()"


def test_sources_excluded_from_equality(tmp_path: Path) -> None:
    from_env = load_settings(cwd=tmp_path, environ={"PYWORKFLOW_EXECUTOR": "local"})
    assert from_env == Settings()
    assert from_env.sources != Settings().sources
    assert hash(from_env) == hash(Settings())


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_pyproject(tmp_path, "[tool.pyworkflow\n")
    with pytest.raises(ConfigError, match=str(path).replace("\\", "\\\\")):
        load_settings(cwd=tmp_path, environ={})


def test_plugin_options_from_environment_variables() -> None:
    from pyworkflow.config import load_settings

    settings = load_settings(
        environ={
            "PYWORKFLOW_CELERY__BROKER_URL": "redis://h:1/0",
            "PYWORKFLOW_CELERY__SWEEP_INTERVAL": "2",
            "PYWORKFLOW_STORAGE": "memory://",
        }
    )
    assert settings.plugin_tables["celery"] == {
        "broker_url": "redis://h:1/0",
        "sweep_interval": "2",
    }
    assert settings.storage == "memory://"
    assert settings.source_of("celery.sweep_interval") == "env PYWORKFLOW_CELERY__SWEEP_INTERVAL"
