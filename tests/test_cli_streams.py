"""``pyworkflow runs stream RUN_ID NAME``: a run's durable stream on the terminal."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from .test_cli import cli

FLOWS = textwrap.dedent(
    """
    from pyworkflow import step, workflow, write_stream

    @step()
    async def talk() -> int:
        await write_stream("log", "hello")
        await write_stream("log", {"n": 1})
        await write_stream("log", 2)
        return 3

    @workflow
    async def chatty() -> int:
        return await talk()
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def test_runs_stream_prints_chunks_and_resumes(project: Path) -> None:
    run_id = json.loads(cli(project, "run", "flows:chatty", "--wait", "--json").stdout)["run_id"]
    out = cli(project, "runs", "stream", run_id, "log")
    assert out.stdout.splitlines() == ["hello", '{"n": 1}', "2"]
    lines = cli(project, "runs", "stream", run_id, "log", "--after", "1", "--json").stdout
    shown = [json.loads(line) for line in lines.splitlines()]
    assert [(s["seq"], s["value"], s["attempt"]) for s in shown] == [(2, {"n": 1}, 1), (3, 2, 1)]
    assert cli(project, "runs", "stream", run_id, "other", "--no-follow").stdout == ""
    missing = cli(project, "runs", "stream", "no-such-run", "log", ok=False)
    assert missing.returncode != 0 and "no-such-run" in missing.stderr
