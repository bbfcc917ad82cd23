"""The command line's edges (issue 12, findings 12-15), driven as a user would.

``run --wait`` prints every event (12), argument errors exit non-zero before
a run exists (13), ``run`` works only its own run (14), and help, the worker's
start line, piped tables and file-path targets (15).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

import pyworkflow
from pyworkflow import RunStatus, step, workflow
from pyworkflow.cli import app
from pyworkflow.models import EventType, NewEvent, Run, utcnow
from pyworkflow.runtime import configure, get_runtime, shutdown
from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import RedisServer, wait_for
from tests.test_cli import FLOWS, cli

ROOT = Path(__file__).resolve().parents[1]
#: A printed event line of ``run --wait``: ``HH:MM:SS.mmm  <event>``.
EVENT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  \S")
BOX = set("│─┃━┏┓┗┛┡┩└┘┌┐╭╮╰╯")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


# ----- 12: `run --wait` prints the last events -----

RELEASE = threading.Event()


@step()
async def held_step() -> str:
    while not RELEASE.is_set():  # runs until the test has read the first events
        await anyio.sleep(0.01)
    return "released"


@workflow
async def held_flow() -> str:
    return await held_step()


def test_run_wait_reads_the_events_after_the_final_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run ends between one round's reads: the events must still all be printed.

    ``get_run`` lets the run finish and returns its final status: a follower
    that read the events before the status (and stopped there) misses
    ``step_completed`` and ``workflow_completed``.
    """
    RELEASE.clear()
    real_get_run = pyworkflow.get_run

    def get_run_after_the_end(run_id: str) -> pyworkflow.RunInfo:
        RELEASE.set()
        while not (info := real_get_run(run_id)).status.is_terminal:
            time.sleep(0.01)
        return info

    monkeypatch.setattr(pyworkflow, "get_run", get_run_after_the_end)
    result = CliRunner().invoke(
        app,
        ["--storage", "memory://", "run", f"{__name__}:held_flow", "--wait"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    printed = [
        line.split("  ", 1)[1] for line in result.output.splitlines() if EVENT_LINE.match(line)
    ]
    assert printed == [
        "workflow_started",
        "step_started held_step attempt 1",
        "step_completed held_step",
        "workflow_completed",
    ], result.output
    assert "result: 'released'" in result.output


@pytest.mark.slow
def test_run_wait_prints_every_event_of_every_run(project: Path) -> None:
    """Twenty runs in a row: each prints exactly the events its log holds."""
    printed: dict[str, int] = {}
    for i in range(20):
        out = cli(project, "run", "flows:greet", f"n{i}", "--wait").stdout
        run_id = re.search(r"started run (\w+)", out)
        assert run_id is not None, out
        printed[run_id.group(1)] = sum(1 for line in out.splitlines() if EVENT_LINE.match(line))
        assert "step_completed s1" in out and "workflow_completed" in out, out
    listed = json.loads(cli(project, "runs", "list", "--json").stdout)
    assert {r["run_id"]: r["events"] for r in listed} == printed


# ----- 13: argument errors -----


@pytest.mark.slow
def test_argument_errors_exit_non_zero_before_a_run_exists(project: Path) -> None:
    for args in (
        ["run", "flows:greet"],
        ["run", "flows:greet", "--wait"],
        ["run", "flows:greet", '"ana"', "2", "3"],
        ["run", "flows:greet", '"ana"', "colour=red", "--wait", "--json"],
    ):
        out = cli(project, *args, ok=False)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, (args, out.stderr)  # one line, not wrapped mid-sentence
        assert lines[0].startswith("error: arguments do not fit workflow greet(name: str"), lines
        assert "started run" not in out.stdout
    missing = cli(project, "run", "flows:greet", ok=False).stderr
    assert "missing a required argument: 'name'" in missing
    assert json.loads(cli(project, "runs", "list", "--json").stdout) == []


# ----- 14: `run` works its own run only -----


def _leftover_run(db: Path, name: str, argument: str) -> str:
    """A due run of ``name`` written straight to the project's storage (nobody works it)."""
    configure(storage=f"sqlite:///{db}", embedded_worker=False)
    runtime = get_runtime()
    now = utcnow()
    run = Run(
        run_id=uuid.uuid4().hex,
        workflow_name=name,
        status=RunStatus.PENDING,
        input=runtime.serializer.dumps({"args": (argument,), "kwargs": {}}),
        serializer=runtime.serializer.name,
        created_at=now,
        updated_at=now,
        wake_at=now,
    )
    started = NewEvent(EventType.WORKFLOW_STARTED, None, {"workflow": name, "version": None})
    runtime.call(runtime.storage.create_run, run, [started])
    shutdown()
    return run.run_id


@pytest.mark.slow
def test_run_works_only_its_own_run(project: Path) -> None:
    db = project / ".pyworkflow" / "pyworkflow.db"
    db.parent.mkdir()
    leftover = _leftover_run(db, "greet", "someone-else")
    waited = cli(project, "run", "flows:greet", "mine", "--wait")
    assert "mine" in waited.stdout and "someone-else" not in waited.stdout
    cli(project, "run", "flows:greet", "mine-too")
    cli(project, "run", "flows:four", "1", "--wait")
    shown = json.loads(cli(project, "runs", "show", leftover, "--json").stdout)
    assert shown["status"] == "pending"
    assert [e["type"] for e in shown["events"]] == ["workflow_started"]
    runs = json.loads(cli(project, "runs", "list", "--json").stdout)
    assert sorted(r["status"] for r in runs) == ["completed"] * 3 + ["pending"]
    # a worker does work the backlog
    (project / "pyproject.toml").write_text('[tool.pyworkflow]\nmodules = ["flows"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_POLL_INTERVAL"] = "0.05"
    worker = subprocess.Popen(
        [sys.executable, "-m", "pyworkflow", "worker"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def done() -> bool:
            out = cli(project, "runs", "show", leftover, "--json").stdout
            return bool(json.loads(out)["status"] == "completed")

        wait_for(done, 60, "a worker to run the leftover run")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


# ----- 15: polish -----


@pytest.mark.slow
def test_help_follows_the_usual_conventions(project: Path) -> None:
    run_help = cli(project, "run", "--help").stdout
    assert "Usage: pyworkflow run [OPTIONS] TARGET [ARGUMENTS]..." in run_help
    assert "{target}" not in run_help and "path/to/file.py:WORKFLOW" in run_help
    worker_help = cli(project, "worker", "--help").stdout
    assert "``" not in worker_help and "drain_timeout" in worker_help
    for command in ([], ["run"], ["worker"], ["runs"], ["runs", "list"], ["runs", "retry"]):
        text = cli(project, *command, "--help").stdout
        assert "<bool>" not in text, (command, text)
        assert "--help" in text


@pytest.mark.slow
def test_worker_prints_one_line_when_it_starts(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    log = project / "worker.err"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "pyworkflow", "worker", "-m", "flows", "--concurrency", "3"],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        text = wait_for(lambda: log.read_text().strip(), 60, "the worker's start line")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert text.splitlines()[0] == (
        "pyworkflow worker: storage sqlite:///.pyworkflow/pyworkflow.db, modules flows, "
        "concurrency 3"
    )


@pytest.mark.slow
@pytest.mark.redis
def test_worker_start_line_hides_the_storage_password(project: Path, tmp_path: Path) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    server = require_server(lambda: RedisServer(tmp_path / "redis", aof=True, password=password))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        env["PYWORKFLOW_STORAGE"] = server.url
        log = project / "worker.err"
        with log.open("w") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "pyworkflow", "worker"],
                cwd=project,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            text = wait_for(lambda: log.read_text().strip(), 60, "the worker's start line")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    finally:
        server.stop()
    line = text.splitlines()[0]
    assert password not in log.read_text()
    assert line.startswith("pyworkflow worker: storage redis://:***@127.0.0.1:"), line
    assert line.endswith("modules (none), concurrency 64"), line


@pytest.mark.slow
def test_piped_tables_are_plain_and_whole(project: Path) -> None:
    napping = json.loads(cli(project, "run", "flows:napper", "--json").stdout)["run_id"]
    done = json.loads(cli(project, "run", "flows:four", "1", "--wait", "--json").stdout)["run_id"]
    listed = cli(project, "runs", "list").stdout
    assert not BOX & set(listed), listed
    assert "…" not in listed
    header, *rows = listed.strip().splitlines()
    assert header.split() == ["workflow", "status", "created", "updated", "events", "run", "id"]
    by_id = {row.split()[-1]: row.split() for row in rows}
    assert by_id[napping][:2] == ["napper", "suspended"]
    assert by_id[done][:2] == ["four", "completed"]
    shown = cli(project, "runs", "show", done).stdout
    assert not BOX & set(shown) and "…" not in shown
    assert "workflow_completed" in shown
    for command in (["runs", "events", done], ["plugins"], ["config"]):
        text = cli(project, *command).stdout
        assert not BOX & set(text) and "…" not in text, (command, text)


@pytest.mark.slow
def test_run_accepts_a_file_path(project: Path) -> None:
    (project / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.py", project / "examples" / "quickstart.py")
    out = cli(project, "run", "examples/quickstart.py:my_workflow", "7", "--wait")
    assert "result: 'Processed 7'" in out.stdout  # the finding's command line
    out = cli(project, "run", "./examples/quickstart.py:my_workflow", "item_id=8", "--wait")
    assert "result: 'Processed 8'" in out.stdout
    # the module name a worker would import (-m examples.quickstart)
    shown = json.loads(cli(project, "runs", "list", "--limit", "1", "--json").stdout)
    assert shown[0]["workflow"] == "my_workflow"
    # outside the current directory: imported from its own folder
    elsewhere = project.parent / f"elsewhere-{uuid.uuid4().hex[:6]}"
    elsewhere.mkdir()
    (elsewhere / "far_flows.py").write_text(FLOWS)
    far = cli(project, "run", f"{elsewhere / 'far_flows.py'}:greet", "bo", "--wait", "--json")
    assert json.loads(far.stdout)["status"] == "completed"
    missing = cli(project, "run", "examples/nope.py:my_workflow", ok=False)
    assert missing.returncode == 2 and "no such Python file" in missing.stderr
    unknown = cli(project, "run", "nosuch:wf", ok=False)
    assert unknown.returncode == 2
    assert "cannot import module 'nosuch'" in unknown.stderr
