"""Executors declare whether workflows run in other processes (issue 12, finding 11).

An executor whose workers import workflows by module refuses, at ``start()``,
a workflow defined in ``__main__``; the local executor runs one as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyworkflow.config import load_settings
from pyworkflow.errors import ConfigError
from pyworkflow.executors.base import Executor
from pyworkflow.executors.local import LocalExecutor
from pyworkflow.workflow import WorkflowDefinition


async def _body() -> None:
    """A workflow body for the definitions below (never run)."""


def _definition(origin: str) -> WorkflowDefinition:
    return WorkflowDefinition("nightly", None, lambda: _body, origin)


class _Remote(Executor):
    """A fake executor whose workflows run in worker processes."""

    name = "remote"
    runs_workflows_elsewhere = True

    def notify(self, run_id: str | None = None) -> None:
        """Nothing to wake: the fake never runs anything."""


def test_an_executor_running_workflows_elsewhere_refuses_main_workflows() -> None:
    with pytest.raises(ConfigError) as caught:
        _Remote().check_startable(_definition("__main__.nightly"))
    message = str(caught.value)
    assert message.startswith("workflow 'nightly' is defined in the script ")
    assert "'remote' executor" in message and "cannot import __main__" in message
    assert "from workflows import nightly" in message
    assert "'modules' setting" in message and "PYWORKFLOW_MODULES=workflows" in message
    # a workflow in an importable module is fine
    _Remote().check_startable(_definition("myapp.flows.nightly"))


def test_the_local_executor_accepts_main_workflows() -> None:
    local = LocalExecutor(load_settings({}))
    assert not local.runs_workflows_elsewhere
    local.check_startable(_definition("__main__.nightly"))


def test_the_local_executor_runs_a_workflow_defined_in_the_script(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            """
            from pyworkflow import get_result, start, step, workflow

            @step()
            async def process_item(item_id: int):
                return f"Processed {item_id}"

            @workflow
            async def my_workflow(item_id: int):
                return await process_item(item_id)

            print("result:", get_result(start(my_workflow, item_id=123), timeout=60))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_STORAGE"] = f"sqlite:///{tmp_path / 'pw.db'}"
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "result: Processed 123" in out.stdout
