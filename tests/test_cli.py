"""The pyworkflow command line, driven as a user would: subprocesses on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FLOWS = textwrap.dedent(
    """
    from pathlib import Path
    from pyworkflow import FatalError, step, workflow, sleep

    MARKS = Path("marks.txt")

    def mark(name):
        with MARKS.open("a") as fh:
            fh.write(name + "\\n")

    @step()
    async def s1(x: int) -> int:
        mark("s1"); return x + 1

    @step()
    async def s2(x: int) -> int:
        mark("s2"); return x * 2

    @step()
    async def s3(x: int) -> int:
        mark("s3")
        if Path("broken").exists():
            raise FatalError("s3 is broken")
        return x + 100

    @step()
    async def s4(x: int) -> int:
        mark("s4"); return -x

    @workflow
    async def four(x: int) -> int:
        return await s4(await s3(await s2(await s1(x))))

    @workflow
    async def greet(name: str, times: int = 1) -> list:
        return [await s1(times) for _ in range(1)] + [name]

    @workflow
    async def napper() -> str:
        await sleep("1h")
        return "woke"
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def cli(project: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_POLL_INTERVAL"] = "0.05"
    out = subprocess.run(
        [sys.executable, "-m", "pyworkflow", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def test_run_wait_list_show_events_json(project: Path) -> None:
    out = cli(project, "run", "flows:greet", '"ana"', "times=2", "--wait", "--json")
    data = json.loads(out.stdout)
    assert data["status"] == "completed"
    run_id = data["run_id"]
    human = cli(project, "run", "flows:greet", "bo", "--wait")
    assert "step_completed s1" in human.stdout and "completed" in human.stdout

    listed = json.loads(cli(project, "runs", "list", "--json").stdout)
    assert {r["run_id"] for r in listed} >= {run_id}
    assert all(r["status"] == "completed" for r in listed)
    assert json.loads(cli(project, "runs", "list", "--status", "failed", "--json").stdout) == []
    assert len(json.loads(cli(project, "runs", "list", "--limit", "1", "--json").stdout)) == 1
    table = cli(project, "runs", "list").stdout
    assert run_id in table and "greet" in table

    shown = json.loads(cli(project, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "completed"
    assert shown["events"][0]["type"] == "workflow_started"
    assert "workflow_completed" in cli(project, "runs", "show", run_id).stdout
    events = json.loads(cli(project, "runs", "events", run_id, "--json").stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_errors_are_one_line_with_nonzero_exit(project: Path) -> None:
    out = cli(project, "runs", "show", "no-such-run", ok=False)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    debug = cli(project, "--debug", "runs", "show", "no-such-run", ok=False)
    assert "Traceback" in debug.stderr
    bad = cli(project, "runs", "list", "--status", "bogus", ok=False)
    assert bad.returncode != 0 and "bogus" in bad.stderr


def test_cancel_and_hooks_resume(project: Path) -> None:
    run_id = json.loads(cli(project, "run", "flows:napper", "--json").stdout)["run_id"]
    # the CLI process exited after the run suspended; it sleeps in storage
    shown = json.loads(cli(project, "runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "suspended"
    out = json.loads(cli(project, "runs", "cancel", run_id, "--json").stdout)
    assert out["cancel_requested"] is True
    missing = cli(project, "hooks", "resume", "nope", "--data", "{}", ok=False)
    assert missing.returncode == 1 and "nope" in missing.stderr
    (project / "payload.json").write_text('{"a": 1}')
    bad = cli(project, "hooks", "resume", "nope", "--data", "{not json", ok=False)
    assert bad.returncode != 0 and "JSON" in bad.stderr


def test_plugins_and_config(project: Path) -> None:
    plugins = json.loads(cli(project, "plugins", "--json").stdout)
    schemes = {s for p in plugins for s in p["storage_schemes"]}
    assert {"sqlite", "memory", "file"} <= schemes
    assert any("local" in p["executors"] for p in plugins)
    (project / "pyproject.toml").write_text("[tool.pyworkflow]\nmax_payload_bytes = 4096\n")
    config = json.loads(cli(project, "config", "--json").stdout)
    assert config["max_payload_bytes"]["value"] == 4096
    assert "pyproject.toml" in config["max_payload_bytes"]["source"]
    assert config["storage"]["source"] == "default"


def test_retry_resumes_from_the_failed_step(project: Path) -> None:
    (project / "broken").touch()
    out = cli(project, "run", "flows:four", "1", "--wait", "--json", ok=False)
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert data["status"] == "failed" and "s3 is broken" in data["error"]
    (project / "broken").unlink()  # the fix
    unknown = cli(project, "runs", "retry", data["run_id"], "--wait", ok=False)
    assert unknown.returncode != 0 and "-m MODULE" in unknown.stderr
    retried = json.loads(
        cli(project, "runs", "retry", data["run_id"], "-m", "flows", "--wait", "--json").stdout
    )
    assert retried["status"] == "completed"
    marks = (project / "marks.txt").read_text().split()
    assert marks.count("s1") == 1 and marks.count("s2") == 1
    assert marks.count("s3") == 2 and marks.count("s4") == 1


def test_replay_reports_determinism_and_divergence(project: Path) -> None:
    run_id = json.loads(cli(project, "run", "flows:four", "1", "--wait", "--json").stdout)["run_id"]
    harmless = FLOWS.replace(
        'mark("s1"); return x + 1', 'mark("s1")  # refactored\n    return x + 1'
    )
    (project / "flows.py").write_text(harmless)
    ok = json.loads(cli(project, "runs", "replay", run_id, "-m", "flows", "--json").stdout)
    assert ok["deterministic"] is True and ok["position"] is None
    assert ok["operations"] == 4  # the four steps, counted before they are discarded
    human_ok = cli(project, "runs", "replay", run_id, "-m", "flows").stdout
    assert "deterministic (4 operations replayed)" in human_ok
    breaking = FLOWS.replace(
        "return await s4(await s3(await s2(await s1(x))))",
        "return await s4(await s2(await s1(x)))",
    )
    (project / "flows.py").write_text(breaking)
    out = cli(project, "runs", "replay", run_id, "-m", "flows", "--json", ok=False)
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["deterministic"] is False and report["position"] == "3"
    assert report["recorded"] == "step 's3'" and report["called"] == "step 's4'"
    assert report["operations"] == 2  # s1 and s2 replayed before the divergence
    human = cli(project, "runs", "replay", run_id, "-m", "flows", ok=False)
    assert "NOT deterministic at operation 3" in human.stdout
