"""Cold start (issue 13): what a fresh process imports, asserted on the import graph, not the clock.

``import pyworkflow`` binds its public names on first use; the default SQLite
storage runs on stdlib ``sqlite3`` (no SQLAlchemy/SQLModel); ``pyworkflow
--help`` imports neither the server stack nor the engine's. ``bench/cold_start.py``
prints the timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow.cli import render
from pyworkflow.models import RunStatus

#: Not imported by ``import pyworkflow``.
NOT_ON_IMPORT = (
    "anyio",
    "asyncio",
    "attrs",
    "cattrs",
    "cloudpickle",
    "httpx",
    "loguru",
    "pluggy",
    "rich",
    "sqlalchemy",
    "sqlmodel",
    "starlette",
    "typer",
    "uvicorn",
)
#: Not imported by a first 1-step workflow on the default SQLite storage and local executor.
NOT_FOR_A_SQLITE_RUN = (
    "asyncpg",
    "cattrs",  # the JSON serializer builds its converter for the first attrs class/dataclass
    "celery",
    "cloudpickle",
    "httpx",
    "redis",
    "rich",
    "sqlalchemy",
    "sqlmodel",
    "starlette",
    "tomllib",  # no pyproject.toml to read
    "typer",
    "uvicorn",
)
#: Not imported by ``pyworkflow --help``.
NOT_FOR_HELP = (
    "anyio",
    "asyncio",
    "loguru",
    "pyworkflow.engine",
    "pyworkflow.models",
    "sqlalchemy",
    "sqlmodel",
    "starlette",
    "uvicorn",
)

_REPORT = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}


def _modules_after(code: str, cwd: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run ``code`` in a fresh interpreter; the modules it imported beyond a bare one's."""
    script = cwd / "probe.py"
    script.write_text(code + "\n" + _REPORT + "\n")
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    bare = subprocess.run(
        [sys.executable, "-c", _REPORT],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_env(),
        timeout=60,
    )
    after = set(json.loads(out.stderr.strip().splitlines()[-1]))
    return after - set(json.loads(bare.stderr)), out


def _tops(modules: set[str]) -> set[str]:
    return modules | {name.split(".", 1)[0] for name in modules}


def test_import_pyworkflow_imports_no_dependency(tmp_path: Path) -> None:
    new, _ = _modules_after("import pyworkflow", tmp_path)
    assert _tops(new) & set(NOT_ON_IMPORT) == set()
    assert {name for name in new if name.startswith("pyworkflow.")} == set()


def test_a_sqlite_run_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        from pyworkflow import get_result, start, step, workflow

        @step
        async def add(a: int, b: int) -> int:
            return a + b

        @workflow
        async def one(a: int) -> int:
            return await add(a, 1)

        assert get_result(start(one, 41)) == 42
        from pyworkflow.runtime import current_settings
        assert current_settings().storage.startswith("sqlite:///"), current_settings().storage
        assert current_settings().executor == "local"
        """
    )
    new, _ = _modules_after(code, tmp_path)
    assert "pyworkflow.storage.sqlite" in new
    assert _tops(new) & set(NOT_FOR_A_SQLITE_RUN) == set()
    assert (tmp_path / ".pyworkflow" / "pyworkflow.db").exists()


def test_help_imports_neither_server_nor_engine(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from pyworkflow.cli import main
        sys.argv = ["pyworkflow", "--help"]
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        """
    )
    new, out = _modules_after(code, tmp_path)
    assert "Usage" in out.stdout and "runs" in out.stdout
    assert _tops(new) & set(NOT_FOR_HELP) == set()


@pytest.mark.parametrize("first", ["import pyworkflow.step, pyworkflow.workflow", "pass"])
def test_step_and_workflow_are_the_decorators_whatever_is_imported_first(
    tmp_path: Path, first: str
) -> None:
    code = textwrap.dedent(
        f"""
        import types
        {first}
        import pyworkflow
        from pyworkflow import Step, Workflow, step, workflow
        import pyworkflow.step, pyworkflow.workflow
        for value in (step, workflow, pyworkflow.step, pyworkflow.workflow):
            assert callable(value) and not isinstance(value, types.ModuleType), value
        assert pyworkflow.step is step and pyworkflow.workflow is workflow
        assert isinstance(Step, type) and isinstance(Workflow, type)
        """
    )
    _modules_after(code, tmp_path)


@pytest.mark.parametrize(
    "first",
    [
        "pyworkflow.errors",
        "pyworkflow.logs",  # binds pyworkflow.redaction while it is itself half imported
        "pyworkflow.redaction",
        "pyworkflow.storage.sqlite",
        "pyworkflow.cli, pyworkflow.models",  # the CLI package alone does not silence
    ],
)
def test_the_library_is_silent_once_any_submodule_is_imported(tmp_path: Path, first: str) -> None:
    code = f"import {first}\n" + textwrap.dedent(
        """
        from loguru import logger
        exec(compile("logger.warning('from the library')", "<lib>", "exec"),
             {"__name__": "pyworkflow.probe", "logger": logger})
        logger.warning("from the application")
        """
    )
    _, out = _modules_after(code, tmp_path)
    assert "from the library" not in out.stderr
    assert "from the application" in out.stderr


def test_lazy_names_resolve_and_unknown_names_fail() -> None:
    for name in pyworkflow.__all__:
        assert getattr(pyworkflow, name) is not None, name
    assert set(pyworkflow.__all__) <= set(dir(pyworkflow))
    with pytest.raises(AttributeError, match="no_such_name"):
        pyworkflow.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_status_style_covers_every_status() -> None:
    assert set(render.STATUS_STYLE) == {status.value for status in RunStatus}
    assert render.STATUS_STYLE[RunStatus.FAILED] == "red"
