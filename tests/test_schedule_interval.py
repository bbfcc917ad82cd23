"""Interval schedules (``every="15m"``, an anchor): ticks, checks, firing on the virtual clock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pyworkflow import Cron, Every, scheduled_at, sleep, workflow
from pyworkflow.models import CatchupPolicy, OverlapPolicy, Schedule
from pyworkflow.schedules.api import _create, build_schedule, check_timing
from pyworkflow.schedules.firing import select_ticks, tick_run_id
from pyworkflow.schedules.interval import EPOCH, IntervalSpec, format_every, is_interval
from pyworkflow.schedules.spec import parse_timing
from pyworkflow.testing import WorkflowEnvironment
from pyworkflow.workflow import _registry

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


@workflow(name="interval.tick")
async def tick(label: str = "t") -> str:
    when = scheduled_at()
    return f"{label}@{when.isoformat() if when else None}"


@workflow(name="interval.slow")
async def slow() -> str:
    await sleep("150s")
    return "done"


# ----- the spec -----


def test_default_anchor_is_the_epoch_so_ticks_are_aligned() -> None:
    spec = IntervalSpec.of("15m")
    assert spec.anchor == EPOCH and spec.expression == "@every 15m"
    assert spec.next_after(datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)) == T0.replace(minute=15)
    assert spec.next_after(T0) == T0.replace(minute=15)  # strictly after
    assert IntervalSpec.of("1d").next_after(T0) == datetime(2026, 6, 2, tzinfo=UTC)
    assert IntervalSpec.of(3600).next_after(T0) == T0 + timedelta(hours=1)
    assert IntervalSpec.of(timedelta(minutes=5)).every == timedelta(minutes=5)


def test_ticks_follow_the_anchor_and_none_come_before_it() -> None:
    anchor = datetime(2026, 6, 1, 9, 40, tzinfo=PARIS)  # 07:40 UTC
    spec = IntervalSpec.of("45m", anchor)
    assert spec.anchor == datetime(2026, 6, 1, 7, 40, tzinfo=UTC)
    assert spec.next_after(datetime(2020, 1, 1, tzinfo=UTC)) == spec.anchor
    assert spec.next_after(spec.anchor) == spec.anchor + timedelta(minutes=45)
    got = spec.ticks(
        datetime(2026, 6, 1, 7, 0, tzinfo=UTC), datetime(2026, 6, 1, 10, 55, tzinfo=UTC), 10
    )
    assert [t.strftime("%H:%M") for t in got] == ["07:40", "08:25", "09:10", "09:55", "10:40"]
    # bounds are inclusive, the limit keeps the oldest
    assert spec.ticks(spec.anchor, spec.anchor + timedelta(minutes=90), 2) == [
        spec.anchor,
        spec.anchor + timedelta(minutes=45),
    ]
    assert spec.ticks(spec.anchor, spec.anchor - timedelta(seconds=1), 5) == []


def test_text_form_round_trips() -> None:
    for every, anchor, text in [
        ("15m", None, "@every 15m"),
        ("1h30m", None, "@every 1h30m"),
        (90061, None, "@every 1d1h1m1s"),
        ("2w", None, "@every 2w"),
        ("1d", datetime(2026, 1, 5, 9, 30, tzinfo=UTC), "@every 1d from 2026-01-05T09:30:00+00:00"),
    ]:
        spec = IntervalSpec.of(every, anchor)
        assert spec.expression == text
        assert IntervalSpec.parse(text) == spec
        assert parse_timing(text) == spec
    assert IntervalSpec.parse("  @EVERY 1h 30m  ") == IntervalSpec.of("90m")
    assert IntervalSpec.parse("@every 1m from 2026-01-05T10:30:00+01:00").anchor == datetime(
        2026, 1, 5, 9, 30, tzinfo=UTC
    )
    assert format_every(timedelta(seconds=5400)) == "1h30m"
    assert is_interval("@every 5s") and not is_interval("@everyday") and not is_interval(5)


@pytest.mark.parametrize(
    ("every", "error", "says"),
    [
        (0, ValueError, "must be positive"),
        ("0s", ValueError, "must be positive"),
        (-60, ValueError, "negative"),
        ("500ms", ValueError, "too small"),
        (0.5, ValueError, "too small"),
        ("1.5s", ValueError, "whole number of seconds"),
        ("soon", ValueError, "not a duration"),
        ("6000w", ValueError, "longer than 100 years"),
        (True, TypeError, "not bool"),
        ([60], TypeError, "not list"),
        (None, TypeError, "not NoneType"),
    ],
)
def test_bad_intervals_are_named(every: object, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        IntervalSpec.of(every)  # type: ignore[arg-type]  # wrong types on purpose


def test_bad_anchors() -> None:
    with pytest.raises(ValueError, match="naive"):
        IntervalSpec.of("1h", datetime(2026, 1, 1, 9, 0))
    with pytest.raises(TypeError, match="not str"):
        IntervalSpec.of("1h", "2026-01-01T09:00:00+00:00")  # type: ignore[arg-type]  # on purpose
    with pytest.raises(TypeError, match="not date"):
        IntervalSpec.of("1h", datetime(2026, 1, 1).date())  # type: ignore[arg-type]  # on purpose
    with pytest.raises(ValueError, match="not an ISO 8601"):
        IntervalSpec.parse("@every 1h from tomorrow")
    with pytest.raises(ValueError, match="naive"):
        IntervalSpec.parse("@every 1h from 2026-01-01T09:00:00")
    with pytest.raises(ValueError, match="write '@every <duration>'"):
        IntervalSpec.parse("@every")


def test_exactly_one_of_cron_and_every() -> None:
    with pytest.raises(TypeError, match="not both"):
        check_timing("* * * * *", "1m", None, "UTC")
    with pytest.raises(TypeError, match=r"give cron .* or every"):
        check_timing(None, None, None, "UTC")
    with pytest.raises(TypeError, match="anchor applies to an interval"):
        check_timing("* * * * *", None, T0, "UTC")
    with pytest.raises(ValueError, match="takes no time zone"):
        check_timing(None, "1m", None, "Europe/Paris")
    with pytest.raises(ValueError, match="takes no time zone"):
        parse_timing("@every 1m", "Europe/Paris")
    with pytest.raises(TypeError, match="cron must be a string"):
        check_timing(60, None, None, "UTC")  # type: ignore[arg-type]  # on purpose
    assert check_timing(None, "1m", T0, "UTC") == IntervalSpec.of("1m", T0)
    assert check_timing("@every 1m", None, None, "UTC") == IntervalSpec.of("1m")


def test_catchup_policies_apply_to_interval_ticks() -> None:
    spec = IntervalSpec.of("10s")

    def row(catchup: CatchupPolicy) -> Schedule:
        return Schedule(
            name="s",
            workflow_name="wf",
            cron=spec.expression,
            timezone="UTC",
            input="{}",
            serializer="json",
            created_at=T0,
            updated_at=T0,
            next_fire_at=T0,
            catchup=catchup,
            grace=15.0,
            catchup_window=3600.0,
        )

    now = T0 + timedelta(seconds=60)  # 12:00:00 .. 12:01:00 due; grace 15 s keeps :50 and :60
    seconds = {
        p: [int((t - T0).total_seconds()) for t in select_ticks(row(p), spec, now)]
        for p in CatchupPolicy
    }
    assert seconds[CatchupPolicy.NONE] == [50, 60]
    assert seconds[CatchupPolicy.LATEST] == [40, 50, 60]
    assert seconds[CatchupPolicy.ALL] == [0, 10, 20, 30, 40, 50, 60]


# ----- firing under the virtual clock -----


def _create_in(env: WorkflowEnvironment, name: str, wf: object, **options: object) -> Schedule:
    runtime = env.runtime
    schedule = build_schedule(runtime, name, wf, **options)  # type: ignore[arg-type]
    stored: Schedule = runtime.call(_create, runtime, schedule, False)
    env.sync.advance(0)
    return stored


def _runs_of(env: WorkflowEnvironment, workflow_name: str) -> list[str]:
    runtime = env.runtime
    page = runtime.call(runtime.storage.list_runs)
    return [r.run_id for r in page.runs if r.workflow_name == workflow_name]


def test_each_interval_tick_starts_one_run_at_its_time() -> None:
    with WorkflowEnvironment(start=T0 + timedelta(minutes=3)) as env:
        stored = _create_in(env, "quarter", tick, every="15m", kwargs={"label": "q"})
        assert stored.cron == "@every 15m" and stored.timezone == "UTC"
        assert stored.next_fire_at == T0 + timedelta(minutes=15)
        env.sync.advance("11m")  # 12:14: nothing yet
        assert _runs_of(env, "interval.tick") == []
        env.sync.advance("50m")  # 13:04: ticks 12:15, 12:30, 12:45, 13:00
        runs = _runs_of(env, "interval.tick")
        ticks = [T0 + timedelta(minutes=m) for m in (15, 30, 45, 60)]
        assert sorted(runs) == sorted(tick_run_id("quarter", t) for t in ticks)
        assert sorted(env.sync.result(r) for r in runs) == [f"q@{t.isoformat()}" for t in ticks]


def test_an_anchored_interval_waits_for_its_anchor() -> None:
    anchor = datetime(2026, 6, 1, 14, 5, 30, tzinfo=PARIS)  # 12:05:30 UTC, 5.5 min after start
    with WorkflowEnvironment(start=T0) as env:
        stored = _create_in(env, "anchored", tick, every="2m", anchor=anchor)
        assert stored.cron == "@every 2m from 2026-06-01T12:05:30+00:00"
        assert stored.next_fire_at == anchor
        env.sync.advance("5m")
        assert _runs_of(env, "interval.tick") == []
        env.sync.advance("5m")  # 12:10: ticks 12:05:30, 12:07:30, 12:09:30
        results = sorted(env.sync.result(r) for r in _runs_of(env, "interval.tick"))
        expected = [anchor + timedelta(minutes=2 * k) for k in range(3)]
        assert results == [f"t@{t.astimezone(UTC).isoformat()}" for t in expected]


def test_interval_overlap_skip_keeps_one_run_at_a_time() -> None:
    # ticks every minute, each run takes 150 s: skip starts :01, :04 (not :02, :03)
    with WorkflowEnvironment(start=T0) as env:
        _create_in(env, "o", slow, every="1m", overlap=OverlapPolicy.SKIP)
        env.sync.advance("4m")
        runtime = env.runtime
        runtime.call(runtime.storage.delete_schedule, "o")
        env.sync.advance("5m")
        runs = _runs_of(env, "interval.slow")
        scheduled = sorted(env.sync.events(r)[0].payload["scheduled_at"] for r in runs)
        assert scheduled == [(T0 + timedelta(minutes=m)).isoformat() for m in (1, 4)]


@pytest.mark.anyio
async def test_the_environment_creates_interval_schedules() -> None:
    async with WorkflowEnvironment(start=T0) as env:
        stored = await env.create_schedule("env", tick, every="20m", anchor=T0 + timedelta(hours=1))
        assert stored.next_fire_at == T0 + timedelta(hours=1)
        await env.advance("2h")  # 13:00, 13:20, 13:40, 14:00
        page = await env.runtime.acall(env.runtime.storage.list_runs)
        assert len([r for r in page.runs if r.workflow_name == "interval.tick"]) == 4
        (schedule,) = await env.schedules()
        assert schedule.cron == "@every 20m from 2026-06-01T13:00:00+00:00"


def test_pause_and_resume_an_interval_schedule() -> None:
    from pyworkflow.schedules import api

    with WorkflowEnvironment(start=T0) as env:
        _create_in(env, "p", tick, every="10m")
        runtime = env.runtime
        runtime.call(api._set_paused, runtime, "p", True)
        env.sync.advance("25m")
        assert _runs_of(env, "interval.tick") == []
        resumed = runtime.call(api._set_paused, runtime, "p", False)
        assert resumed.next_fire_at == T0 + timedelta(minutes=30)  # the pause is not caught up


def test_a_declared_interval_schedule_fires_and_keeps_its_anchor() -> None:
    anchor = datetime(2026, 6, 1, 12, 0, 20, tzinfo=UTC)

    @workflow(name="interval.declared", schedule=Every("30s", anchor=anchor, kwargs={"label": "d"}))
    async def declared(label: str) -> str:
        return label

    @workflow(name="interval.text", schedule="@every 1m")
    async def text() -> str:
        return "x"

    try:
        with WorkflowEnvironment(start=T0) as env:
            env.sync.advance("2m")
            runtime = env.runtime
            by_name = {s.name: s for s in runtime.call(runtime.storage.list_schedules)}
            assert by_name["interval.declared"].cron == "@every 30s from 2026-06-01T12:00:20+00:00"
            assert by_name["interval.text"].cron == "@every 1m"
            runs = _runs_of(env, "interval.declared")  # 12:00:20, :50, 12:01:20, :50
            assert len(runs) == 4 and {env.sync.result(r) for r in runs} == {"d"}
            assert len(_runs_of(env, "interval.text")) == 2  # 12:01, 12:02
    finally:
        _registry.pop("interval.declared", None)
        _registry.pop("interval.text", None)


def test_declaration_errors_name_the_workflow() -> None:
    with pytest.raises(ValueError, match="too small"):
        Every("100ms")
    with pytest.raises(
        ValueError, match=r"schedule of workflow 'interval\.bad'.*takes no time zone"
    ):

        @workflow(name="interval.bad", schedule=Cron("@every 1m", timezone="Europe/Paris"))
        async def bad() -> None:
            return None

    assert "interval.bad" not in _registry
    every = Every("15m", anchor=T0)
    assert isinstance(every, Cron) and every.interval == IntervalSpec.of("15m", T0)
    assert every.timezone == "UTC" and every.kwargs == {}


def test_build_schedule_errors() -> None:
    with WorkflowEnvironment(start=T0) as env:
        with pytest.raises(TypeError, match="not both"):
            _create_in(env, "x", tick, cron="* * * * *", every="1m")
        with pytest.raises(TypeError, match="needs its ticks"):
            _create_in(env, "x", tick)
        with pytest.raises(ValueError, match="naive"):
            _create_in(env, "x", tick, every="1m", anchor=datetime(2026, 1, 1))
        with pytest.raises(ValueError, match="too small"):
            _create_in(env, "x", tick, every=0.25)
        with pytest.raises(TypeError, match="not list"):
            _create_in(env, "x", tick, every=["1m"])
        assert env.runtime.call(env.runtime.storage.list_schedules) == []


def test_a_process_with_only_interval_schedules_never_loads_the_cron_parser(
    tmp_path: Path,
) -> None:
    script = tmp_path / "only_intervals.py"
    script.write_text(
        "import sys, time\n"
        "from pyworkflow import Every, list_runs, workflow\n"
        "from pyworkflow.schedules import create_schedule, delete_schedule\n"
        "@workflow(schedule=Every('1s', name='declared'))\n"
        "async def ping() -> str:\n"
        "    return 'pong'\n"
        "create_schedule('created', ping, every='1s', anchor=None)\n"
        "deadline = time.monotonic() + 30\n"
        "while len(list_runs(workflow='ping').runs) < 3 and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "delete_schedule('declared'); delete_schedule('created')\n"
        "print(len(list_runs(workflow='ping').runs) >= 3)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('croniter', 'dateutil'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["True", "[]"]
