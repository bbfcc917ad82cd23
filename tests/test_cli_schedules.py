"""``pyworkflow schedules ...``, ``pyworkflow queues`` and ``run --queue``, as a user runs them.

Subprocesses on real files, SQLite storage, queues from ``[tool.pyworkflow.queues.<name>]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import FLOWS, cli

pytestmark = pytest.mark.slow

PYPROJECT = """
[tool.pyworkflow]
storage = "sqlite:///pw.db"

[tool.pyworkflow.queues.emails]
concurrency = 1
rate = "20/5s"

[tool.pyworkflow.queues.bulk]
partition_concurrency = 2
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path


def as_json(project: Path, *args: str) -> Any:
    return json.loads(cli(project, *args, "--json").stdout)


def error_of(out: subprocess.CompletedProcess[str]) -> str:
    """The one-line error of a failed command (and no traceback)."""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    return lines[0]


def test_create_list_show_pause_resume_trigger_delete(project: Path) -> None:
    created = as_json(
        project,
        "schedules",
        "create",
        "nightly",
        "flows:greet",
        "0 3 * * *",
        "--timezone",
        "Europe/Paris",
        "--args",
        '["ana"]',
        "--kwargs",
        '{"times": 2}',
        "--overlap",
        "cancel_previous",
        "--catchup",
        "all",
        "--grace",
        "30s",
        "--catchup-window",
        "2h",
        "--queue",
        "emails",
    )
    assert created["name"] == "nightly" and created["workflow"] == "greet"
    assert created["cron"] == "0 3 * * *" and created["timezone"] == "Europe/Paris"
    assert created["args"] == ["ana"] and created["kwargs"] == {"times": 2}
    assert created["overlap"] == "cancel_previous" and created["catchup"] == "all"
    assert created["grace"] == 30.0 and created["catchup_window"] == 7200.0
    assert created["queue"] == "emails" and created["paused"] is False
    # 03:00 in Paris in winter is 02:00 UTC
    assert created["next_fire_at"].endswith("T02:00:00+00:00")
    human = cli(
        project,
        "schedules",
        "create",
        "hourly",
        "greet",
        "@hourly",
        "--args",
        '["bo"]',
        "-m",
        "flows",
    )
    assert "schedule hourly created: greet at '@hourly'" in human.stdout

    listed = as_json(project, "schedules", "list")
    assert [s["name"] for s in listed] == ["hourly", "nightly"]
    assert listed[1] == created
    table = cli(project, "schedules", "list").stdout
    assert "nightly" in table and "Europe/Paris" in table and "active" in table

    assert as_json(project, "schedules", "show", "nightly") == created
    shown = cli(project, "schedules", "show", "nightly").stdout
    assert '["ana"]' in shown and '{"times": 2}' in shown and "cancel_previous" in shown

    assert "schedule nightly paused" in cli(project, "schedules", "pause", "nightly").stdout
    assert as_json(project, "schedules", "show", "nightly")["paused"] is True
    assert "paused" in cli(project, "schedules", "list").stdout
    assert as_json(project, "schedules", "resume", "nightly")["paused"] is False

    triggered = cli(project, "schedules", "trigger", "hourly", "-m", "flows").stdout
    assert triggered.startswith("started run ")
    run_id = triggered.split()[-1]
    run = as_json(project, "runs", "show", run_id)
    assert run["workflow"] == "greet"
    started = run["events"][0]["payload"]
    assert started["schedule"] == "hourly" and started["triggered"] is True
    into_queue = as_json(project, "schedules", "trigger", "nightly", "-m", "flows")
    assert as_json(project, "runs", "show", into_queue["run_id"])["status"] == "queued"

    refused = cli(project, "schedules", "delete", "nightly", ok=False)  # no answer: not deleted
    assert refused.returncode != 0
    assert as_json(project, "schedules", "show", "nightly")["name"] == "nightly"
    asked = subprocess.run(
        [sys.executable, "-m", "pyworkflow", "schedules", "delete", "nightly"],
        cwd=project,
        env=_env(),
        input="y\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert asked.returncode == 0, asked.stderr
    assert (
        "Delete schedule 'nightly'" in asked.stderr and "schedule nightly deleted" in asked.stdout
    )
    gone = as_json(project, "schedules", "delete", "hourly", "--yes")
    assert gone == {"name": "hourly", "deleted": True}
    assert as_json(project, "schedules", "list") == []
    assert as_json(project, "runs", "show", run_id)["run_id"] == run_id  # its runs stay


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}


def test_unknown_schedule_fails_like_an_unknown_run(project: Path) -> None:
    unknown_run = cli(project, "runs", "show", "nope", ok=False)
    for command in ("show", "pause", "resume", "trigger", "delete"):
        out = cli(project, "schedules", command, "nope", ok=False)
        assert out.returncode == unknown_run.returncode == 1, command
        assert "no schedule named 'nope'" in error_of(out)
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["flows:greet", "0 3 * *"], "has 4 field(s)"),
        (["flows:greet", "* * * * *", "--timezone", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["flows:nope", "@daily"], "module 'flows' has no 'nope'"),
        (["nope", "@daily"], "no workflow named 'nope' is registered here"),
        (["greet", "@daily", "--overlap", "sometimes"], "invalid overlap policy 'sometimes'"),
        (["greet", "@daily", "--catchup", "never"], "invalid catchup policy 'never'"),
        (["greet", "@daily", "--grace", "soon"], "invalid grace 'soon'"),
        (["greet", "@daily", "--queue", "bad queue"], "invalid queue name 'bad queue'"),
        (["greet", "@daily", "--args", '{"name": "x"}'], "--args must be an array in JSON"),
        (["greet", "@daily", "--args", "[1,"], "--args is not acceptable JSON"),
        (["greet", "@daily", "--kwargs", '["x"]'], "--kwargs must be an object in JSON, got an"),
        (["greet", "@daily"], "missing a required argument: 'name'"),
        (["greet", "@daily", "--args", '["x"]', "--kwargs", '{"loud": 1}'], "loud"),
        (["greet", "@daily", "--every", "1m"], "give a CRON expression or --every, not both"),
        (["greet"], "give a CRON expression (such as '0 * * * *') or --every DURATION"),
        (["greet", "@daily", "--anchor", "2030-01-01T00:00:00Z"], "--anchor goes with --every"),
        (["greet", "--every", "0s"], "must be positive"),
        (["greet", "--every", "-1m"], "invalid interval (every) '-1m'"),
        (["greet", "--every", "250ms"], "too small: the shortest interval is 1 second"),
        (["greet", "--every", "soon"], "invalid interval (every) 'soon': not a duration"),
        (["greet", "--every", "1m", "--anchor", "monday"], "--anchor 'monday' is not an ISO"),
        (["greet", "--every", "1m", "--anchor", "2030-01-01T09:00"], "naive"),
        (["greet", "--every", "1m", "--timezone", "Europe/Paris"], "takes no time zone"),
    ],
)
def test_bad_options_are_usage_errors_and_create_nothing(
    project: Path, extra: list[str], said: str
) -> None:
    out = cli(project, "schedules", "create", "bad", *extra, "-m", "flows", ok=False)
    assert out.returncode == 2, out.stderr
    assert said in error_of(out)
    assert as_json(project, "schedules", "list") == []


def test_a_taken_name_needs_replace(project: Path) -> None:
    cli(project, "schedules", "create", "daily", "flows:greet", "@daily", "--args", '["a"]')
    taken = cli(
        project,
        "schedules",
        "create",
        "daily",
        "flows:greet",
        "@hourly",
        "--args",
        '["a"]',
        ok=False,
    )
    assert taken.returncode == 1
    assert "a schedule named 'daily' exists already" in error_of(taken)
    assert "--replace" in taken.stderr
    replaced = as_json(
        project,
        *("schedules", "create", "daily", "flows:greet", "@hourly", "--args", '["b"]'),
        *("--replace", "--paused"),
    )
    assert replaced["cron"] == "@hourly" and replaced["args"] == ["b"] and replaced["paused"]


def test_queues_list_configured_queues_with_their_counts(project: Path) -> None:
    empty = {q["queue"]: q for q in as_json(project, "queues")}
    assert list(empty) == ["bulk", "emails"]
    assert empty["emails"] == {
        "queue": "emails",
        "configured": True,
        "waiting": 0,
        "active": 0,
        "admitted": 0,
        "concurrency": 1,
        "worker_concurrency": None,
        "partition_concurrency": None,
        "rate": {"count": 20, "period": 5.0},
        "priority_aging": 60.0,
    }
    assert empty["bulk"]["partition_concurrency"] == 2 and empty["bulk"]["rate"] is None

    runs = [
        as_json(project, "run", "flows:napper", "--queue", "emails", "--priority", str(p))["run_id"]
        for p in (1, 2)
    ]
    deduped = as_json(project, "run", "flows:napper", "--queue", "emails", "--dedup-key", "k")
    again = as_json(project, "run", "flows:napper", "--queue", "emails", "--dedup-key", "k")
    assert again["run_id"] == deduped["run_id"]
    waiting = {q["queue"]: q for q in as_json(project, "queues")}["emails"]
    assert (waiting["waiting"], waiting["active"], waiting["admitted"]) == (3, 0, 0)

    worker = subprocess.Popen(
        [sys.executable, "-m", "pyworkflow", "worker", "-m", "flows"],
        cwd=project,
        env={**_env(), "PYWORKFLOW_POLL_INTERVAL": "0.05"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the worker admits one run (concurrency 1); the napper then sleeps
            emails = {q["queue"]: q for q in as_json(project, "queues")}["emails"]
            if emails["active"] == 1 and emails["waiting"] == 2:
                break
            assert time.monotonic() < deadline, emails
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert emails["admitted"] == 1
    # the higher priority was admitted first
    low, high = (as_json(project, "runs", "show", r) for r in runs)
    assert low["status"] == "queued" and low["admitted_at"] is None
    assert high["status"] != "queued" and high["admitted_at"] is not None
    assert (low["queue"], low["priority"], high["priority"]) == ("emails", 1, 2)
    shown = cli(project, "runs", "show", runs[0]).stdout
    assert "queue emails  priority 1  admitted not yet" in shown
    table = cli(project, "queues").stdout.splitlines()
    assert table[0].split() == [
        "queue",
        "waiting",
        "active",
        "admitted/min",
        "concurrency",
        "per",
        "worker",
        "per",
        "partition",
        "rate",
    ]
    assert table[2].split()[:3] == ["emails", "2", "1"] and table[2].split()[-1] == "20/5s"


def test_run_refuses_bad_queue_options_before_a_run_exists(project: Path) -> None:
    for option, value, said in [
        ("--queue", "bad queue", "invalid queue name 'bad queue'"),
        ("--priority", "9999999", "priority must be between"),
        ("--partition-key", "", "partition_key must be a non-empty string"),
    ]:
        out = cli(project, "run", "flows:napper", option, value, ok=False)
        assert out.returncode == 2, out.stderr
        assert said in error_of(out)
    out = cli(project, "run", "flows:napper", "--priority", "high", ok=False)
    assert out.returncode == 2
    assert as_json(project, "runs", "list") == []


def test_interval_schedules_are_created_listed_and_shown(project: Path) -> None:
    created = as_json(
        project,
        "schedules",
        "create",
        "quarter",
        "flows:greet",
        "--every",
        "15m",
        "--args",
        '["a"]',
    )
    assert created["cron"] == "@every 15m" and created["every"] == 900.0
    assert created["anchor"] == "1970-01-01T00:00:00+00:00" and created["timezone"] == "UTC"
    assert int(created["next_fire_at"][14:16]) % 15 == 0
    human = cli(
        project,
        "schedules",
        "create",
        "anchored",
        "flows:greet",
        "--every",
        "1h30m",
        "--anchor",
        "2030-01-05T09:30:00+01:00",
        "--args",
        '["b"]',
    ).stdout
    assert "schedule anchored created: greet at '@every 1h30m from 2030-01-05T08:30:00+00:00'" in (
        human
    )
    assert "next tick 2030-01-05 08:30:00" in human
    listed = as_json(project, "schedules", "list")
    assert [(s["name"], s["every"]) for s in listed] == [("anchored", 5400.0), ("quarter", 900.0)]
    table = cli(project, "schedules", "list").stdout
    assert "@every 15m" in table and "@every 1h30m" in table
    shown = cli(project, "schedules", "show", "anchored").stdout
    assert "every" in shown and "1h30m from 2030-01-05T08:30:00+00:00" in shown
    assert as_json(project, "schedules", "show", "quarter") == created
