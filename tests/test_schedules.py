"""Schedules: tick selection (catch-up), firing under the harness's virtual clock, overlap."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pyworkflow import Cron, RunStatus, scheduled_at, sleep, workflow
from pyworkflow.errors import ScheduleExistsError, WorkflowNotFoundError
from pyworkflow.models import CatchupPolicy, OverlapPolicy, Schedule
from pyworkflow.schedules.cron import CronSpec
from pyworkflow.schedules.firing import select_ticks, tick_run_id
from pyworkflow.testing import WorkflowEnvironment
from pyworkflow.workflow import _registry

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@workflow(name="sched.report")
async def report(kind: str = "daily") -> str:
    when = scheduled_at()
    return f"{kind}@{when.isoformat() if when else None}"


@workflow(name="sched.slow")
async def slow() -> str:
    await sleep("90s")
    return "done"


def _schedule(catchup: CatchupPolicy, next_fire_at: datetime, **changes: object) -> Schedule:
    fields: dict[str, object] = {
        "name": "s",
        "workflow_name": "wf",
        "cron": "* * * * * *",  # every second
        "timezone": "UTC",
        "input": "{}",
        "serializer": "json",
        "created_at": T0,
        "updated_at": T0,
        "next_fire_at": next_fire_at,
        "catchup": catchup,
        "grace": 5.0,
        "catchup_window": 3600.0,
    }
    fields.update(changes)
    return Schedule(**fields)  # type: ignore[arg-type]


SECONDLY = CronSpec.parse("* * * * * *")


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        # 20 s of downtime: ticks 12:00:00 .. 12:00:20 due at 12:00:20; grace 5 s keeps 15..20
        (CatchupPolicy.NONE, [15, 16, 17, 18, 19, 20]),
        (CatchupPolicy.LATEST, [14, 15, 16, 17, 18, 19, 20]),
        (CatchupPolicy.ALL, list(range(21))),
    ],
)
def test_catchup_policies_after_downtime(catchup: CatchupPolicy, expected: list[int]) -> None:
    now = T0 + timedelta(seconds=20)
    ticks = select_ticks(_schedule(catchup, T0), SECONDLY, now)
    assert ticks == [T0 + timedelta(seconds=s) for s in expected]


def test_on_time_ticks_fire_under_every_policy() -> None:
    now = T0 + timedelta(seconds=2)  # a sweep two seconds late: within grace
    for catchup in CatchupPolicy:
        ticks = select_ticks(_schedule(catchup, T0), SECONDLY, now)
        assert ticks == [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]


def test_catchup_all_is_bounded_by_its_window() -> None:
    now = T0 + timedelta(hours=2)
    s = _schedule(CatchupPolicy.ALL, T0, cron="* * * * *", catchup_window=600.0)
    ticks = select_ticks(s, CronSpec.parse("* * * * *"), now)
    assert ticks[0] == now - timedelta(minutes=10) and ticks[-1] == now and len(ticks) == 11


def test_tick_run_ids_are_stable_and_distinct() -> None:
    assert tick_run_id("a", T0) == tick_run_id("a", T0)
    assert tick_run_id("a", T0) != tick_run_id("b", T0)
    assert tick_run_id("a", T0) != tick_run_id("a", T0 + timedelta(seconds=1))


def test_each_tick_starts_one_run_that_reads_its_tick() -> None:
    with WorkflowEnvironment(start=T0) as env:
        env_loop_create(env, "hourly", report, "0 * * * *", kwargs={"kind": "h"})
        env.sync.advance("3h")
        runs = _runs_of(env, "sched.report")
        assert len(runs) == 3
        ticks = sorted(T0 + timedelta(hours=h) for h in (1, 2, 3))
        results = sorted(env.sync.result(r) for r in runs)
        assert results == [f"h@{t.isoformat()}" for t in ticks]
        assert sorted(runs) == sorted(tick_run_id("hourly", t) for t in ticks)


@pytest.mark.parametrize(
    ("overlap", "expected"),
    [
        # minutely ticks at :01 :02 :03 of a run that takes 90 s
        (OverlapPolicy.SKIP, ["completed", "completed"]),  # :02 skipped (:01 still running)
        (OverlapPolicy.ALLOW, ["completed", "completed", "completed"]),
        (OverlapPolicy.CANCEL_PREVIOUS, ["cancelled", "cancelled", "completed"]),
    ],
)
def test_overlap_policies(overlap: OverlapPolicy, expected: list[str]) -> None:
    with WorkflowEnvironment(start=T0) as env:
        env_loop_create(env, "m", slow, "* * * * *", overlap=overlap)
        env.sync.advance("3m")
        runtime = env.runtime
        runtime.call(runtime.storage.delete_schedule, "m")
        env.sync.advance("5m")
        runs = _runs_of(env, "sched.slow")
        infos = sorted((env.sync.get_run(r) for r in runs), key=lambda i: i.created_at)
        assert [i.status.value for i in infos] == expected


def test_declared_schedule_exists_in_the_environment() -> None:
    # declared here, and forgotten after: every runtime of this process would fire it
    @workflow(name="sched.declared", schedule=Cron("*/10 * * * *", kwargs={"kind": "code"}))
    async def declared(kind: str) -> str:
        return kind

    try:
        with WorkflowEnvironment(start=T0) as env:
            env.sync.advance("20m")
            names = [s.name for s in _schedules(env)]
            assert "sched.declared" in names
            runs = _runs_of(env, "sched.declared")
            assert len(runs) == 2 and {env.sync.result(r) for r in runs} == {"code"}
    finally:
        _registry.pop("sched.declared", None)


def test_pause_resume_and_bad_schedules() -> None:
    from pyworkflow.schedules import api

    with WorkflowEnvironment(start=T0) as env:
        env_loop_create(env, "p", report, "* * * * *")
        runtime = env.runtime
        runtime.call(api._set_paused, runtime, "p", True)
        env.sync.advance("5m")
        assert _runs_of(env, "sched.report") == []
        resumed = runtime.call(api._set_paused, runtime, "p", False)
        assert resumed.next_fire_at == T0 + timedelta(minutes=6)  # the pause is not caught up
        with pytest.raises(ScheduleExistsError):
            env_loop_create(env, "p", report, "* * * * *")
        with pytest.raises(ValueError, match="61"):
            env_loop_create(env, "q", report, "61 * * * *")
        with pytest.raises(ValueError, match="Mars/Olympus"):
            env_loop_create(env, "q", report, "* * * * *", timezone="Mars/Olympus")
        with pytest.raises(ValueError, match="overlap"):
            env_loop_create(env, "q", report, "* * * * *", overlap="sometimes")
        with pytest.raises(WorkflowNotFoundError):
            env_loop_create(env, "q", "no.such.workflow", "* * * * *")
        with pytest.raises(TypeError, match="arguments do not fit"):
            env_loop_create(env, "q", report, "* * * * *", args=(1, 2, 3))
        with pytest.raises(ValueError, match="schedule name"):
            env_loop_create(env, "a/b", report, "* * * * *")


def test_a_bad_declared_schedule_fails_at_declaration() -> None:
    with pytest.raises(ValueError, match=r"schedule of workflow 'sched\.bad'"):

        @workflow(name="sched.bad", schedule="not a cron")
        async def bad() -> None:
            return None


def env_loop_create(env: WorkflowEnvironment, name: str, wf: object, cron: str, **options: object):  # type: ignore[no-untyped-def]
    import anyio.from_thread  # noqa: F401  # the env's sync calls run on its loop

    from pyworkflow.schedules.api import _create, build_schedule

    runtime = env.runtime
    replace = bool(options.pop("replace", False))
    schedule = build_schedule(runtime, name, wf, cron, **options)  # type: ignore[arg-type]
    stored = runtime.call(_create, runtime, schedule, replace)
    env.sync.advance(0)
    return stored


def _runs_of(env: WorkflowEnvironment, workflow_name: str) -> list[str]:
    runtime = env.runtime
    page = runtime.call(runtime.storage.list_runs)
    return [r.run_id for r in page.runs if r.workflow_name == workflow_name]


def _schedules(env: WorkflowEnvironment) -> list[Schedule]:
    runtime = env.runtime
    return runtime.call(runtime.storage.list_schedules)


def test_run_status_of_a_scheduled_run_is_ordinary() -> None:
    with WorkflowEnvironment(start=T0) as env:
        env_loop_create(env, "d", report, "@daily")
        env.sync.advance("1d")
        (run_id,) = _runs_of(env, "sched.report")
        assert env.sync.get_run(run_id).status is RunStatus.COMPLETED
        started = env.sync.events(run_id)[0].payload
        assert started["schedule"] == "d"
        assert started["scheduled_at"] == (T0 + timedelta(days=1)).replace(hour=0).isoformat()


def test_a_schedule_of_a_workflow_unknown_here_is_left_as_it_is() -> None:
    with WorkflowEnvironment(start=T0) as env:
        runtime = env.runtime
        stored = _schedule(CatchupPolicy.ALL, T0 + timedelta(minutes=1), workflow_name="elsewhere")
        runtime.call(runtime.storage.put_schedule, stored)
        env.sync.advance("5m")
        assert _runs_of(env, "elsewhere") == []
        (kept,) = [s for s in _schedules(env) if s.name == "s"]
        assert kept.next_fire_at == T0 + timedelta(minutes=1)  # nothing fired, nothing skipped
        # and its lease was let go: any worker may claim it at once
        claimed = runtime.call(
            runtime.storage.claim_schedules, "other", T0 + timedelta(minutes=5), 10, timedelta(1)
        )
        assert [s.name for s in claimed] == ["s"]


def test_a_process_without_schedules_never_loads_the_cron_parser(tmp_path: Path) -> None:
    """croniter and dateutil cost ~10 ms to import: only a process with a schedule pays."""
    script = tmp_path / "one.py"
    script.write_text(
        "import sys\n"
        "from pyworkflow import get_result, start, step, workflow\n"
        "@step()\n"
        "async def s(x):\n"
        "    return x\n"
        "@workflow()\n"
        "async def w(x):\n"
        "    return await s(x)\n"
        "assert get_result(start(w, 1)) == 1\n"
        "print(sorted(m for m in sys.modules if m.startswith(('croniter', 'dateutil'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
