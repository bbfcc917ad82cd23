"""A workflow module named in ``modules`` that cannot be imported is a ConfigError (issue 12, 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import ConfigError
from pyworkflow.executors.local import import_modules


def test_missing_module_names_setting_module_and_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        import_modules(["no_such_flows_mod"])
    message = str(info.value)
    assert "'no_such_flows_mod'" in message
    assert "config key 'modules'" in message and "[tool.pyworkflow] modules" in message
    assert f"The current directory is {os.getcwd()}" in message
    assert "Python looked in:" in message
    assert all(entry in message for entry in sys.path if entry)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_missing_parent_package_is_the_module_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot import workflow module 'nopkg_xyz\.flows'"):
        import_modules(["nopkg_xyz.flows"])


def test_a_missing_dependency_of_the_module_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flows_needing_dep.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        import_modules(["flows_needing_dep"])
    message = str(info.value)
    assert "'flows_needing_dep'" in message and "was found" in message
    assert "'not_installed_dep_xyz'" in message


def test_an_importable_module_still_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flows_ok_xyz.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_modules(["flows_ok_xyz"])
    assert sys.modules["flows_ok_xyz"].VALUE == 42
    monkeypatch.delitem(sys.modules, "flows_ok_xyz")


def test_embedded_worker_start_raises_config_error() -> None:
    pyworkflow.configure(storage="memory://", modules=["no_such_flows_mod"])
    with pytest.raises(ConfigError, match="no_such_flows_mod"):
        pyworkflow.list_runs()


def test_worker_command_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.pyworkflow]\nmodules = ["flows"]\n'
        f'storage = "sqlite:///{(project / "pw.db").as_posix()}"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "worker"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot import workflow module 'flows'" in done.stderr
    assert "config key 'modules'" in done.stderr and str(project) in done.stderr
