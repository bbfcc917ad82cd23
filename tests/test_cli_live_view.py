"""The live view of ``pyworkflow run --wait``: a pure function of real recorded event logs."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from pyworkflow import FatalError, continue_as_new, create_hook, sleep, step, workflow
from pyworkflow.cli import live_view as live_view_module
from pyworkflow.cli.app import app
from pyworkflow.cli.live_view import LiveRender, build_model, countdown, live_enabled, live_view
from pyworkflow.models import Event
from pyworkflow.testing import WorkflowEnvironment

START = datetime(2030, 1, 1, tzinfo=UTC)


@step(max_retries=3, retry_delay="exponential", jitter=0.0)
async def lv_charge(amount: int) -> str:
    raise ConnectionError("replaced by the test")


@step()
async def lv_ship(amount: int) -> str:
    return f"shipped {amount}"


@step(max_retries=0)
async def lv_break() -> str:
    raise FatalError("the printer is on fire")


@workflow
async def lv_order(amount: int) -> str:
    await sleep("1h")
    receipt = await lv_charge(amount)
    hook = create_hook(f"approve:{amount}")
    approval = await hook
    return f"{receipt} {await lv_ship(amount)} by {approval['by']}"


@workflow
async def lv_broken() -> str:
    return await lv_break()


@workflow
async def lv_plain() -> str:
    return await lv_ship(7)


@workflow
async def lv_napper(n: int) -> int:
    await sleep("2d")
    return n + 1


@workflow
async def lv_parent(n: int) -> int:
    return await lv_napper(n) * 10


@workflow
async def lv_chain(n: int) -> str:
    if n < 1:
        continue_as_new(n + 1)
    return await lv_ship(n)


def shown(events: list[Event]) -> str:
    console = Console(record=True, width=100, force_terminal=True, file=io.StringIO())
    console.print(live_view(events))
    return console.export_text()


def shown_at(events: list[Event], now: datetime) -> str:
    console = Console(record=True, width=120, force_terminal=True, file=io.StringIO())
    console.print(live_view(events, now))
    return console.export_text()


def test_countdowns_read_like_durations() -> None:
    due = "2030-01-01 00:00:00"
    assert countdown(due, START - timedelta(days=2, hours=3, minutes=4)) == "in 2d 3h"
    assert countdown(due, START - timedelta(hours=3, minutes=4)) == "in 3h 04m"
    assert countdown(due, START - timedelta(minutes=4, seconds=7)) == "in 4m 07s"
    assert countdown(due, START - timedelta(seconds=9)) == "in 9s"
    assert countdown(due, START) == "due now"
    assert countdown(due, START + timedelta(days=1)) == "due now"
    assert countdown("not a time", START) == ""


def test_the_live_render_draws_with_the_time_of_each_refresh() -> None:
    model = build_model([])
    model.sleeps["1"] = "2999-01-01 00:00:00"
    console = Console(record=True, width=100, force_terminal=True, file=io.StringIO())
    console.print(LiveRender(model))
    assert re.search(r"sleeping until 2999-01-01 00:00:00 \(in \d+d \d+h\)", console.export_text())


@pytest.mark.anyio
async def test_the_view_follows_sleeps_retries_hooks_and_the_end() -> None:
    failures = 0

    async def flaky(amount: int) -> str:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise ConnectionError(f"declined {failures}")
        return f"charged {amount}"

    async with WorkflowEnvironment(start=START) as env:
        env.override_step(lv_charge, flaky)
        run_id = await env.start(lv_order, 30)
        asleep = await env.events(run_id)  # suspended in the hour's sleep
        await env.advance("1h")
        await env.advance("1s")  # the first retry (exponential: 1 s, then 2 s)
        retrying = await env.events(run_id)
        await env.advance("2s")
        waiting = await env.events(run_id)  # charged; now the hook waits
        await env.resume_hook("approve:30", {"by": "ana"})
        result = await env.result(run_id)
        done = await env.events(run_id)
    assert result == "charged 30 shipped 30 by ana"

    text = shown(asleep)
    assert "sleeping until 2030-01-01 01:00:00" in text, text
    assert "(in " not in text  # no clock given, no countdown
    ticking = shown_at(asleep, START + timedelta(minutes=12, seconds=3))
    assert "sleeping until 2030-01-01 01:00:00 (in 47m 57s)" in ticking, ticking
    assert f"run {run_id} suspended" in text, text

    model = build_model(retrying)
    assert model.steps and next(iter(model.steps.values())).attempt == 2
    text = shown(retrying)
    assert "sleeping until" not in text, text
    retry = r"lv_charge\s+│\s+retrying\s+│\s+2\s+│\s+retry at 2030-01-01 01:00:03"
    assert re.search(retry, text), text
    assert "declined 2" in text, text
    ticking = shown_at(retrying, START + timedelta(hours=1, seconds=2))
    assert "retry at 2030-01-01 01:00:03 (in 1s)" in ticking, ticking
    late = shown_at(retrying, START + timedelta(hours=1, seconds=9))
    assert "retry at 2030-01-01 01:00:03 (due now)" in late, late

    text = shown(waiting)
    assert re.search(r"lv_charge\s+│\s+completed\s+│\s+3\s+│", text), text
    assert "waiting for hook approve:30" in text, text

    text = shown(done)
    assert re.search(r"lv_charge\s+│\s+completed\s+│\s+3\s+│", text), text
    assert re.search(r"lv_ship\s+│\s+completed\s+│\s+1\s+│", text), text
    assert "waiting for hook" not in text and "sleeping until" not in text, text
    assert f"run {run_id} completed  ({len(done)} events)" in text, text


@pytest.mark.anyio
async def test_a_failed_step_and_run_show_the_error() -> None:
    async with WorkflowEnvironment(start=START) as env:
        run_id = await env.start(lv_broken)
        events = await env.events(run_id)
    text = shown(events)
    error = "FatalError: the printer is on fire"
    assert re.search(rf"lv_break\s+│\s+failed\s+│\s+1\s+│\s+{error}", text), text
    assert f"run {run_id} failed" in text and f"error: {error}" in text, text


@pytest.mark.anyio
async def test_a_child_run_shows_while_it_runs_and_when_it_completed() -> None:
    async with WorkflowEnvironment(start=START) as env:
        run_id = await env.start(lv_parent, 4)
        waiting = await env.events(run_id)
        assert await env.result(run_id) == 50
        done = await env.events(run_id)
    child_id = build_model(waiting).children.popitem()[1].run_id
    assert f"child lv_napper (run {child_id}) running" in shown(waiting)
    assert f"run {run_id} suspended" in shown(waiting)
    assert f"child lv_napper (run {child_id}) completed" in shown(done)


def test_run_wait_on_a_terminal_follows_a_chain_with_one_view_per_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pyworkflow.cli import render

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Console(record=True, width=100, force_terminal=True, file=io.StringIO())
    monkeypatch.setattr(render, "console", terminal)
    result = CliRunner().invoke(
        app,
        ["--storage", "memory://", "run", f"{__name__}:lv_chain", "0", "--wait"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = terminal.export_text()
    first = re.search(r"run (\w+) continued  \(\d+ events\)", text)
    assert first is not None, text
    assert f"run {first.group(1)} continued as " in text, text
    last = re.search(r"run (\w+) completed  \(4 events\)", text)
    assert last is not None and last.group(1) != first.group(1), text
    assert text.rstrip().endswith("result: 'shipped 1'"), text


def test_plain_lines_off_a_terminal_and_with_no_color_or_a_dumb_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not live_enabled(Console(force_terminal=False))
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert live_enabled(Console(force_terminal=True))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not live_enabled(Console(force_terminal=True))
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not live_enabled(Console(force_terminal=True))
    assert live_view_module.__all__  # the module is public API


def test_run_wait_through_clirunner_prints_the_plain_lines() -> None:
    result = CliRunner().invoke(
        app,
        ["--storage", "memory://", "run", f"{__name__}:lv_plain", "--wait"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    run_id = re.match(r"started run (\w+); following it \(Ctrl-C to stop\)$", lines[0])
    assert run_id is not None, result.output
    events = [re.sub(r"^\d\d:\d\d:\d\d\.\d{3}  ", "", line) for line in lines[1:-2]]
    assert events == [
        "workflow_started",
        "step_started lv_ship attempt 1",
        "step_completed lv_ship",
        "workflow_completed",
    ], result.output
    assert lines[-2:] == [f"run {run_id.group(1)} completed", "result: 'shipped 7'"]
    assert "│" not in result.output and "steps" not in result.output


def test_run_wait_on_a_terminal_draws_the_live_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal console the events are drawn as the view (its last frame stays)."""
    from pyworkflow.cli import render

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Console(record=True, width=100, force_terminal=True, file=io.StringIO())
    monkeypatch.setattr(render, "console", terminal)
    result = CliRunner().invoke(
        app,
        ["--storage", "memory://", "run", f"{__name__}:lv_plain", "--wait"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    text = terminal.export_text()
    assert re.search(r"lv_ship\s+│\s+completed\s+│\s+1\s+│", text), text
    assert re.search(r"run \w+ completed  \(4 events\)", text), text
    assert "step_started lv_ship attempt 1" not in text  # no plain lines on a terminal
    assert text.rstrip().endswith("result: 'shipped 7'"), text


# ----- runs list over many pages -----


def test_runs_list_walks_pages_with_a_progress_bar_on_a_terminal_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyworkflow
    from pyworkflow.cli import render, runs

    storage = ["--storage", f"sqlite:///{tmp_path / 'pw.db'}"]
    for _ in range(5):
        started = CliRunner().invoke(app, [*storage, "run", f"{__name__}:lv_plain"])
        assert started.exit_code == 0, started.output

    def listed(*extra: str) -> str:
        result = CliRunner().invoke(app, [*storage, "runs", "list", *extra])
        assert result.exit_code == 0, result.output
        return result.output

    one_page = listed("--limit", "1000")
    one_page_json = listed("--limit", "1000", "--json")
    pages: list[int] = []
    real_list_runs = pyworkflow.list_runs

    def counted(**kwargs: Any) -> Any:
        page = real_list_runs(**kwargs)
        pages.append(len(page.runs))
        return page

    monkeypatch.setattr(runs, "RUNS_PAGE", 2)
    monkeypatch.setattr(pyworkflow, "list_runs", counted)
    assert listed("--limit", "1000") == one_page  # not a terminal: the same plain rows
    assert listed("--limit", "1000", "--json") == one_page_json
    assert pages == [2, 2, 1, 2, 2, 1]
    assert len(one_page.splitlines()) == 6 and "│" not in one_page

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Console(record=True, width=120, force_terminal=True, file=io.StringIO())
    monkeypatch.setattr(render, "console", terminal)
    listed("--limit", "1000")
    raw = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "listing runs" in raw and "5/1000" in raw, raw  # the bar, as it was drawn
    text = terminal.export_text()
    assert text.count("lv_plain") == 5 and "│" in text, text  # then the table


# ----- runs retry --wait follows the retried run like run --wait -----


@step(max_retries=0)
async def lv_maybe(flag: str) -> str:
    if not Path(flag).exists():
        raise FatalError("the flag file is missing")
    return "found"


@workflow
async def lv_retried(flag: str) -> str:
    shipped = await lv_ship(1)
    return f"{shipped}, {await lv_maybe(flag)}"


def test_runs_retry_wait_follows_the_retried_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyworkflow.cli import render

    storage = ["--storage", f"sqlite:///{tmp_path / 'pw.db'}"]
    flag = tmp_path / "flag"
    failed = CliRunner().invoke(
        app, [*storage, "run", f"{__name__}:lv_retried", str(flag), "--wait"]
    )
    assert failed.exit_code == 1, failed.output
    run_id = re.match(r"started run (\w+)", failed.output)
    assert run_id is not None
    flag.touch()  # the fix
    retried = CliRunner().invoke(
        app, [*storage, "runs", "retry", run_id.group(1), "--wait", "-m", __name__]
    )
    assert retried.exit_code == 0, retried.output
    lines = retried.output.splitlines()
    assert lines[0] == f"retried run {run_id.group(1)}; following it (Ctrl-C to stop)"
    events = [re.sub(r"^\d\d:\d\d:\d\d\.\d{3}  ", "", line) for line in lines[1:-2]]
    assert events == [  # only what the retry added: lv_ship is not run again
        "workflow_retried",
        "step_started lv_maybe attempt 2",
        "step_completed lv_maybe",
        "workflow_completed",
    ], retried.output
    assert lines[-2:] == [f"run {run_id.group(1)} completed", "result: 'shipped 1, found'"]

    # on a terminal the view shows the whole run, the retried step on its second attempt
    flag.unlink()
    again = CliRunner().invoke(
        app, [*storage, "run", f"{__name__}:lv_retried", str(flag), "--wait"]
    )
    second = re.match(r"started run (\w+)", again.output)
    assert again.exit_code == 1 and second is not None
    flag.touch()
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Console(record=True, width=100, force_terminal=True, file=io.StringIO())
    monkeypatch.setattr(render, "console", terminal)
    drawn = CliRunner().invoke(
        app, [*storage, "runs", "retry", second.group(1), "--wait", "-m", __name__]
    )
    assert drawn.exit_code == 0, drawn.output
    text = terminal.export_text()
    assert re.search(r"lv_ship\s+│\s+completed\s+│\s+1\s+│", text), text
    assert re.search(r"lv_maybe\s+│\s+completed\s+│\s+2\s+│", text), text
    assert text.rstrip().endswith("result: 'shipped 1, found'"), text
