"""Transient workflows at other doors: ``pyworkflow run`` runs them here, schedules refuse them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pyworkflow import FatalError, create_schedule, runtime, step, workflow
from pyworkflow.cli.app import app


@step
async def trd_double(x: int) -> int:
    return x * 2


@workflow(durable=False)
async def trd_doubled(x: int) -> int:
    return await trd_double(x) + 1


@workflow(durable=False)
async def trd_broken() -> None:
    raise FatalError("nothing to do")


def test_pyworkflow_run_runs_a_transient_workflow_here_and_prints_its_result(
    tmp_path: Path,
) -> None:
    storage = ["--storage", f"sqlite:///{tmp_path / 'pw.db'}"]
    result = CliRunner().invoke(app, [*storage, "run", f"{__name__}:trd_doubled", "20"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "transient run of trd_doubled completed (nothing was stored)",
        "result: 41",
    ]
    as_json = CliRunner().invoke(app, [*storage, "run", f"{__name__}:trd_doubled", "1", "--json"])
    assert json.loads(as_json.output) == {"transient": True, "status": "completed", "result": 3}
    failed = CliRunner().invoke(app, [*storage, "run", f"{__name__}:trd_broken", "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.output)["error"] == "FatalError: nothing to do"
    queued = CliRunner().invoke(
        app, [*storage, "run", f"{__name__}:trd_doubled", "1", "--queue", "q"]
    )
    assert queued.exit_code == 2 and "transient" in queued.output
    listed = CliRunner().invoke(app, [*storage, "runs", "list", "--json"])
    assert json.loads(listed.output) == []  # nothing was stored


def test_a_schedule_of_a_transient_workflow_is_refused() -> None:
    runtime.configure(storage="memory://")
    with pytest.raises(ValueError, match=r"'trd_doubled' is transient \(durable=False\)"):
        create_schedule("every-minute", trd_doubled, every="1m", args=(1,))
