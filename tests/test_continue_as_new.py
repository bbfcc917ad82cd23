"""continue_as_new (issue 15): long loops keep bounded logs; the chain is followed by its links.

The engine cases every backend runs are in ``pyworkflow.testing.suite_continuation``;
these are the must-shows and what needs one backend, a harness or a crash.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pyworkflow
from pyworkflow import (
    EventType,
    RunStatus,
    continue_as_new,
    get_events,
    get_result,
    get_run,
    list_runs,
    runtime,
    sleep,
    start,
    step,
    workflow,
)
from pyworkflow.engine.continuation import continued_from, next_run_id
from pyworkflow.engine.live import Live
from pyworkflow.jsonshape import run_json
from pyworkflow.storage.file import project_run
from pyworkflow.testing import WorkflowEnvironment
from pyworkflow.testing.suite_continuation import can_counter, chain_of

START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def memory() -> Iterator[None]:
    runtime.reset()
    runtime.configure(storage="memory://", poll_interval=0.05)
    yield
    runtime.reset()


@step()
async def tick(i: int) -> int:
    return i + 1


@workflow(name="can_long_loop")
async def long_loop(i: int, until: int, every: int) -> int:
    """One step per iteration; a new run every ``every`` iterations."""
    for _ in range(every):
        if i >= until:
            return i
        i = await tick(i)
    continue_as_new(i, until, every)


def test_ten_thousand_iterations_every_hundred_keep_each_log_bounded(memory: None) -> None:
    first = start(long_loop, 0, 10_000, 100)
    assert get_result(first, timeout=300) == 10_000
    chain = chain_of(first)
    assert len(chain) == 101  # 100 runs of 100 iterations, and the one that returns
    lengths = [get_run(run_id).last_seq for run_id in chain]
    # 100 steps (started + completed) and the run's own start and end: ~202 events
    assert max(lengths) <= 210, max(lengths)
    assert all(len(get_events(run_id)) == n for run_id, n in zip(chain, lengths, strict=True))
    statuses = [get_run(run_id).status for run_id in chain]
    assert statuses == [RunStatus.CONTINUED] * 100 + [RunStatus.COMPLETED]
    assert sum(1 for _ in chain) == len(set(chain))
    # each link is the one derived from the run id, recorded at both ends
    for previous, run_id in itertools.pairwise(chain):
        assert run_id == next_run_id(previous)
        assert get_events(previous)[-1].payload["next_run_id"] == run_id
        assert get_events(run_id)[0].payload["continued_from"] == previous


# ----- idempotency: a crash between "next run created" and "this run ended" -----


@workflow(name="can_crashy")
async def crashy(round_: int) -> int:
    await sleep("1h")
    if round_ < 1:
        continue_as_new(round_ + 1)
    return round_


def test_crash_after_creating_the_next_run_creates_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_end = Live._end
    crashes: list[str] = []

    async def end_crashing_once(self: Live, kind: EventType, *args: Any) -> None:
        if kind == EventType.WORKFLOW_CONTINUED_AS_NEW and not crashes:
            crashes.append(self.run_id)  # the next run exists; this run has not ended
            raise RuntimeError("simulated crash before the run's end is written")
        await real_end(self, kind, *args)

    monkeypatch.setattr(Live, "_end", end_crashing_once)
    with WorkflowEnvironment(start=START) as env:
        first = env.sync.start(crashy, 0)
        assert env.sync.result(first) == 1  # the crashed activation is retried after a back-off
        assert crashes == [first]
        runs = env.runtime.call(env.runtime.storage.list_runs)
        assert sorted(r.run_id for r in runs.runs) == sorted([first, next_run_id(first)])
        second = env.sync.get_run(next_run_id(first))
        assert second.continued_from == first and second.status == RunStatus.COMPLETED
        kinds = [e.type for e in env.sync.events(first)]
        assert kinds.count(EventType.WORKFLOW_CONTINUED_AS_NEW) == 1
        assert kinds[-1] == EventType.WORKFLOW_CONTINUED_AS_NEW
        events = env.sync.events(second.run_id)
        started = [e for e in events if e.type == EventType.WORKFLOW_STARTED]
        assert len(started) == 1  # the replay found the next run, it did not start it again


# ----- where it may be called -----


def test_outside_a_workflow_it_errors() -> None:
    with pytest.raises(RuntimeError, match="only be called inside a workflow"):
        continue_as_new(1)


@step(max_retries=0)
async def continues_in_step() -> None:
    continue_as_new()


@workflow(name="can_step_caller")
async def step_caller() -> None:
    await continues_in_step()


def test_inside_a_step_it_errors_and_fails_the_run(memory: None) -> None:
    run_id = start(step_caller)
    with pytest.raises(RuntimeError, match="cannot be called inside a step body"):
        get_result(run_id, timeout=30)
    info = get_run(run_id)
    assert info.status == RunStatus.FAILED and info.continued_to is None
    assert EventType.WORKFLOW_CONTINUED_AS_NEW not in [e.type for e in get_events(run_id)]


def test_the_signal_is_not_an_exception() -> None:
    from pyworkflow.context import ContinueAsNew

    assert issubclass(ContinueAsNew, BaseException)
    assert not issubclass(ContinueAsNew, Exception)


# ----- under the test harness's virtual clock -----


@workflow(name="can_daily_poller")
async def daily_poller(day: int, until: int, seen: list[int]) -> list[int]:
    """Polls once a day; a new run every 3 days."""
    for _ in range(3):
        if day >= until:
            return seen
        await sleep("1d")
        seen = [*seen, await tick(day)]
        day += 1
    continue_as_new(day, until, seen)


def test_chain_under_the_virtual_clock(workflow_env: WorkflowEnvironment) -> None:
    env = workflow_env.sync
    began = env.now()
    assert env.run(daily_poller, 0, 10, []) == list(range(1, 11))
    assert env.now() - began == timedelta(days=10)


def test_env_result_on_the_first_run_follows_the_chain(workflow_env: WorkflowEnvironment) -> None:
    env = workflow_env.sync
    first = env.start(daily_poller, 0, 7, [])
    assert env.result(first) == list(range(1, 8))
    assert env.get_run(first).status == RunStatus.CONTINUED
    second = env.get_run(first).continued_to
    assert second is not None and env.get_run(second).continued_from == first
    # the next run started at the virtual time the first one continued, 3 days in
    started = env.events(second)[0]
    assert started.timestamp == env.get_run(first).created_at + timedelta(days=3)


# ----- what users see: RunInfo, list, JSON, runs show -----


def test_links_in_run_info_json_and_list(memory: None) -> None:
    first = start(can_counter, 1, 4, 2)
    assert get_result(first, timeout=30) == {"i": 5, "total": 10}
    info = get_run(first)
    assert info.status == RunStatus.CONTINUED
    assert info.status.is_terminal
    data = run_json(info)
    assert data["status"] == "continued" and data["continued_to"] == info.continued_to
    assert data["continued_from"] is None
    assert run_json(get_run(info.continued_to or ""))["continued_from"] == first
    continued = list_runs(status="continued", workflow="can_counter").runs
    assert {r.run_id for r in continued} == set(chain_of(first)[:-1])
    # the link back is on the row: no log is read to find it
    rt = runtime.get_runtime()
    assert continued_from(rt.call(rt.storage.get_run, info.continued_to or "")) == first


def test_runs_show_prints_both_links(tmp_path: Path) -> None:
    from pyworkflow.cli.app import app

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runtime.reset()
    try:
        runtime.configure(storage=url, poll_interval=0.05)
        first = start(can_counter, 1, 4, 2)
        assert get_result(first, timeout=30) == {"i": 5, "total": 10}
        second = get_run(first).continued_to
        assert second is not None
    finally:
        runtime.reset()
    try:
        shown = CliRunner().invoke(app, ["--storage", url, "runs", "show", second])
        assert shown.exit_code == 0, shown.output
        assert f"continues run {first}" in shown.output
        assert f"continued as new: run {next_run_id(second)}" in shown.output
        assert f"continuing run {first}" in shown.output  # its workflow_started event
        as_json = CliRunner().invoke(app, ["--storage", url, "runs", "show", first, "--json"])
        data = json.loads(as_json.output)
        assert data["status"] == "continued" and data["continued_to"] == second
        listed = CliRunner().invoke(
            app, ["--storage", url, "runs", "list", "--status", "continued", "--json"]
        )
        assert listed.exit_code == 0, listed.output
        assert {r["run_id"] for r in json.loads(listed.output)} == {first, second}
    finally:
        runtime.reset()


def test_file_storage_rebuilds_a_continued_run_as_continued(memory: None) -> None:
    first = start(can_counter, 1, 2, 1)
    assert get_result(first, timeout=30) == {"i": 3, "total": 3}
    rt = runtime.get_runtime()
    row = rt.call(rt.storage.get_run, first)
    rebuilt = project_run(row, get_events(first))
    assert rebuilt.status == RunStatus.CONTINUED
    assert rebuilt.wake_at is None and rebuilt.completed_at is not None


def test_replay_check_of_a_continued_run_is_deterministic(memory: None) -> None:
    first = start(can_counter, 1, 4, 2)
    assert get_result(first, timeout=30) == {"i": 5, "total": 10}
    report = pyworkflow.client.check_replay(first)
    assert report.deterministic, report.message


CHAIN_FLOWS = """
from pyworkflow import continue_as_new, step, workflow


@step()
async def bump(n: int) -> int:
    return n + 1


@workflow
async def cli_chain(n: int) -> int:
    n = await bump(n)
    if n < 3:
        continue_as_new(n)
    return n * 100
"""


def test_run_wait_follows_the_chain_to_its_last_run(tmp_path: Path) -> None:
    (tmp_path / "chainflows.py").write_text(CHAIN_FLOWS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    env["PYWORKFLOW_POLL_INTERVAL"] = "0.05"
    command = [sys.executable, "-m", "pyworkflow", "run", "chainflows:cli_chain", "0", "--wait"]
    out = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert out.stdout.count("continued as") == 2
    assert "completed" in out.stdout and "result: 300" in out.stdout
    out = subprocess.run(
        [*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    data = json.loads(out.stdout)
    assert data["status"] == "completed" and data["last_run_id"] != data["run_id"]
