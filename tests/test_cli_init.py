"""``pyworkflow init``: the scaffold runs as printed, never overwrites, and writes valid config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyworkflow.cli.init_cmd import EXECUTORS, RUN_COMMAND, STORAGES, TEST_COMMAND, plan_scaffold
from pyworkflow.config import load_settings


def _env() -> dict[str, str]:
    """The environment without PyWorkflow settings or the outer pytest's options."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYWORKFLOW_", "PYTEST_"))}


def _run(directory: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=directory, env=_env(), capture_output=True, text=True, timeout=120
    )


def init(directory: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return _run(directory, [sys.executable, "-m", "pyworkflow", "init", *options])


def _as_run(command: str) -> list[str]:
    """A printed command, run with this interpreter (``pyworkflow`` is ``python -m pyworkflow``)."""
    words = command.split()
    if words[0] == "pyworkflow":
        return [sys.executable, "-m", "pyworkflow", *words[1:]]
    assert words[0] == "python", command
    return [sys.executable, *words[1:]]


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_the_scaffold_runs_as_printed(tmp_path: Path) -> None:
    out = init(tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert {"created workflows.py", "created test_workflows.py", "created pyproject.toml"} <= set(
        lines
    )
    # the two commands, each on the line after its title
    run_command = lines[lines.index("Run the example:") + 1].strip()
    test_command = lines[lines.index("Run its tests:") + 1].strip()
    assert (run_command, test_command) == (RUN_COMMAND, TEST_COMMAND)

    tests = _run(tmp_path, [*_as_run(test_command), "-p", "no:cacheprovider"])
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout

    example = _run(tmp_path, _as_run(run_command))
    assert example.returncode == 0, example.stderr
    assert "completed" in example.stdout
    assert "result: 'receipt for order-1: 42 EUR'" in example.stdout
    assert (tmp_path / ".pyworkflow" / "pyworkflow.db").exists()  # the configured storage

    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.storage == "sqlite:///.pyworkflow/pyworkflow.db"
    assert settings.executor == "local" and settings.modules == ("workflows",)


def test_it_refuses_to_overwrite_and_names_every_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "workflows.py").write_text("# mine\n")
    (tmp_path / "test_workflows.py").write_text("# mine too\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pyworkflow]\nstorage = "memory://"\n')
    before = _tree(tmp_path)
    out = init(tmp_path, "--storage", "redis")
    assert out.returncode == 1
    error = out.stderr.strip()
    assert error.startswith("error: pyworkflow init writes nothing")
    assert "workflows.py" in error and "test_workflows.py" in error
    assert "pyproject.toml has a [tool.pyworkflow] table already" in error
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("existing", ["workflows.py", "test_workflows.py"])
def test_one_file_in_the_way_stops_everything(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("# mine\n")
    out = init(tmp_path)
    assert out.returncode == 1 and existing in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_an_existing_pyproject_gets_the_table_and_keeps_every_byte(tmp_path: Path) -> None:
    original = (
        '[project]\nname = "shop"  # a comment that stays\nversion = "1.0"\n'
        "dependencies = [\n  'httpx',   # odd spacing stays too\n]\n\n"
        "[tool.ruff]\nline-length = 99"  # no newline at the end
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(original)
    out = init(tmp_path, "--storage", "postgres", "--executor", "ray")
    assert out.returncode == 0, out.stderr
    assert "added [tool.pyworkflow] to pyproject.toml" in out.stdout
    assert "created pyproject.toml" not in out.stdout
    text = pyproject.read_text()
    assert text.startswith(original + "\n")
    import tomllib

    data = tomllib.loads(text)
    assert data["project"] == {"name": "shop", "version": "1.0", "dependencies": ["httpx"]}
    assert data["tool"]["ruff"] == {"line-length": 99}
    assert data["tool"]["pyworkflow"]["executor"] == "ray"


def test_crlf_line_endings_are_kept(tmp_path: Path) -> None:
    original = b'[project]\r\nname = "shop"\r\n'
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_bytes(original)
    out = init(tmp_path)
    assert out.returncode == 0, out.stderr
    raw = pyproject.read_bytes()
    assert raw.startswith(original + b"\r\n[tool.pyworkflow]\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # no bare LF
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.modules == ("workflows",)


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("tool = {ruff = {line-length = 99}}\n", "cannot be appended"),
        ("[project\nname = 1\n", "cannot be read as TOML"),
        ("[tool.pyworkflow.celery]\nbroker_url = 'x'\n", "has a [tool.pyworkflow] table already"),
    ],
)
def test_a_pyproject_that_cannot_take_the_table_is_left_alone(
    tmp_path: Path, content: str, said: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(content)
    with pytest.raises(FileExistsError, match="writes nothing") as caught:
        plan_scaffold(tmp_path, "sqlite", "local")
    assert said in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["pyproject.toml"]


#: What each option writes: (storage URL or executor, plugin to install or None).
STORAGE_URLS = {
    "sqlite": ("sqlite:///.pyworkflow/pyworkflow.db", None),
    "file": ("file://.pyworkflow/runs", None),
    "memory": ("memory://", None),
    "redis": ("redis://localhost:6379/0", "pyworkflow-redis"),
    "postgres": ("postgresql://user:password@localhost:5432/pyworkflow", "pyworkflow-postgres"),
    "mysql": ("mysql://user:password@localhost:3306/pyworkflow", "pyworkflow-mysql"),
}


def test_every_choice_is_covered() -> None:
    assert set(STORAGE_URLS) == set(STORAGES)
    assert set(EXECUTORS) == {"local", "celery", "ray"}


@pytest.mark.parametrize("storage", sorted(STORAGES))
def test_each_storage_writes_valid_config(tmp_path: Path, storage: str) -> None:
    out = init(tmp_path, "--storage", storage)
    assert out.returncode == 0, out.stderr
    url, plugin = STORAGE_URLS[storage]
    settings = load_settings(cwd=tmp_path, environ={})
    assert (settings.storage, settings.executor) == (url, "local")
    assert settings.plugin_tables == {}
    if plugin is None:
        assert "pip install" not in out.stdout
    else:
        assert f"needs the plugin {plugin}" in out.stdout
        assert f"pip install {plugin}" in out.stdout
        assert "placeholder" in out.stdout
    if storage in ("sqlite", "file"):  # built in: the example runs on it as it is
        ran = _run(tmp_path, _as_run(RUN_COMMAND))
        assert ran.returncode == 0, ran.stderr
        assert "receipt for order-1" in ran.stdout


def test_celery_writes_its_table_and_says_to_start_workers(tmp_path: Path) -> None:
    from pyworkflow_celery.settings import CelerySettings

    out = init(tmp_path, "--executor", "celery", "--storage", "redis")
    assert out.returncode == 0, out.stderr
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.executor == "celery" and settings.storage == "redis://localhost:6379/0"
    assert CelerySettings.from_settings(settings).broker_url == "redis://localhost:6379/1"
    assert "pip install pyworkflow-celery" in out.stdout
    assert "pip install pyworkflow-redis" in out.stdout
    assert "celery -A pyworkflow_celery.app worker" in out.stdout
    # the generated tests run on the harness (memory, virtual clock): no server needed
    tests = _run(tmp_path, [*_as_run(TEST_COMMAND), "-p", "no:cacheprovider"])
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_ray_writes_its_table(tmp_path: Path) -> None:
    from pyworkflow_ray.settings import RaySettings

    out = init(tmp_path, "--executor", "ray")
    assert out.returncode == 0, out.stderr
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.executor == "ray" and settings.storage.startswith("sqlite:///")
    assert RaySettings.from_settings(settings).address == ""
    assert "pip install pyworkflow-ray" in out.stdout and "pyworkflow worker" in out.stdout


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--storage", "mongo"], "--storage must be one of sqlite, file, memory, redis"),
        (["--executor", "dask"], "--executor must be one of local, celery, ray; got 'dask'"),
        (["--storage", "memory", "--executor", "celery"], "memory keeps runs in one process"),
        (["--storage", ""], "--storage must be one of"),
    ],
)
def test_bad_options_are_usage_errors_and_write_nothing(
    tmp_path: Path, options: list[str], said: str
) -> None:
    out = init(tmp_path, *options)
    assert out.returncode == 2
    assert said in out.stderr and "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_json_output(tmp_path: Path) -> None:
    import json

    out = init(tmp_path, "--storage", "mysql", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "created": ["pyproject.toml", "test_workflows.py", "workflows.py"],
        "appended": None,
        "plugins": ["pyworkflow-mysql"],
        "commands": [RUN_COMMAND, TEST_COMMAND],
    }
