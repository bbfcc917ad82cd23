"""The run timeline (``pyworkflow.ui.timeline``) over event logs recorded by real runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import RunStatus, get_events
from pyworkflow.models import Event, EventType
from pyworkflow.testing import WorkflowBlockedError, WorkflowEnvironment
from pyworkflow.ui.timeline import BAR_KINDS, OUTCOMES, Bar, Timeline, build_timeline
from pyworkflow.ui.timeline import format_duration as fmt
from tests import ui_run_flows as flows
from tests.conftest import FAST

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _bars(timeline: Timeline, kind: str) -> list[Bar]:
    return [b for b in timeline.bars if b.kind == kind]


def _check_geometry(timeline: Timeline) -> None:
    for bar in timeline.bars:
        assert bar.kind in BAR_KINDS and bar.outcome in OUTCOMES
        assert timeline.start <= bar.start <= bar.end <= timeline.end
        assert 0 <= bar.left <= 100 and 0 <= bar.width <= 100.001 - bar.left
        assert bar.label.strip()
    lefts = [t.left for t in timeline.ticks]
    assert lefts == sorted(lefts) and lefts[0] == 0 and lefts[-1] <= 100


async def test_retries_sleep_hook_and_child_on_virtual_time() -> None:
    flows.attempts.pop("virtual", None)
    async with WorkflowEnvironment(start=T0) as env:
        run_id = await env.start(flows.everything, "virtual")
        with pytest.raises(WorkflowBlockedError):  # skips the retry waits and the sleep
            await env.result(run_id)
        waiting = build_timeline(await env.events(run_id), env.now() + timedelta(seconds=5))

        (hook,) = _bars(waiting, "hook")
        assert hook.outcome == "running" and waiting.live
        assert hook.end == env.now() + timedelta(seconds=5)  # a running bar ends at "now"
        assert waiting.end == hook.end and hook.left + hook.width == pytest.approx(100)

        await env.resume_hook("ui-run:virtual", {"ok": True})
        result = await env.result(run_id)
        assert result["child"] == 42
        events = await env.events(run_id)
        timeline = build_timeline(events, env.now() + timedelta(hours=1))

    _check_geometry(timeline)
    assert not timeline.live
    assert timeline.end == events[-1].timestamp  # an ended run: the axis stops at its end
    steps = _bars(timeline, "step")
    assert [(b.name, b.attempt, b.outcome) for b in steps] == [
        ("ui_run_flaky", 1, "retrying"),
        ("ui_run_flaky", 2, "retrying"),
        ("ui_run_flaky", 3, "completed"),
    ]
    assert "flaky attempt 1" in (steps[0].detail or "")
    waits = _bars(timeline, "retry-wait")
    assert [(b.name, b.attempt, b.outcome) for b in waits] == [
        ("ui_run_flaky", 1, "completed"),
        ("ui_run_flaky", 2, "completed"),
    ]
    for wait, before, after in zip(waits, steps, steps[1:], strict=False):
        assert wait.start == before.end and wait.end == after.start
        assert wait.duration == timedelta(seconds=2)  # fixed 2 s back-off, virtual time
    # a step's attempts and its waits share a lane; every other operation has its own
    assert {b.lane for b in steps + waits} == {0}
    (sleep,) = _bars(timeline, "sleep")
    assert (sleep.outcome, sleep.duration, sleep.lane) == ("completed", timedelta(seconds=30), 1)
    assert sleep.start == steps[-1].end
    (hook,) = _bars(timeline, "hook")
    assert (hook.outcome, hook.lane, hook.detail) == ("completed", 2, "payload received")
    (child,) = _bars(timeline, "child")
    assert (child.name, child.outcome, child.lane) == ("ui_run.child", "completed", 3)
    assert child.child_run_id == (await _child_id(events))
    assert timeline.lanes == 4
    # positions follow time: 4 s of retry waits then a 30 s sleep out of ~34 s
    span = timeline.duration.total_seconds()
    assert sleep.width == pytest.approx(30 / span * 100, abs=0.01)
    assert sleep.left == pytest.approx(4 / span * 100, abs=0.01)
    assert [t.label for t in timeline.ticks][:3] == ["0 ms", "5 s", "10 s"]
    assert steps[0].label.startswith("Step ui_run_flaky, attempt 1: retrying")
    assert waits[1].label.startswith(
        "Retry wait of step ui_run_flaky after attempt 2: completed, 2 s"
    )


async def _child_id(events: list[Event]) -> str:
    (started,) = [e for e in events if e.type == EventType.CHILD_WORKFLOW_STARTED]
    return str(started.payload["child_run_id"])


async def test_a_running_retry_wait_and_sleep_end_at_now() -> None:
    flows.attempts.pop("now", None)
    async with WorkflowEnvironment(start=T0) as env:
        run_id = await env.start(flows.everything, "now")
        now = env.now() + timedelta(seconds=1)
        timeline = build_timeline(await env.events(run_id), now)
        (wait,) = _bars(timeline, "retry-wait")
        assert (wait.outcome, wait.end, wait.attempt) == ("running", now, 1)
        assert "retry due at" in (wait.detail or "")
        assert timeline.live and timeline.end == now

        await env.advance("4s")  # both retries: the step completes, the sleep starts
        now = env.now() + timedelta(seconds=10)
        timeline = build_timeline(await env.events(run_id), now)
        (sleep,) = _bars(timeline, "sleep")
        assert (sleep.outcome, sleep.end) == ("running", now)
        assert [b.outcome for b in _bars(timeline, "step")] == ["retrying", "retrying", "completed"]
        await env.cancel(run_id)
        events = await env.events(run_id)
    # the run's end cuts the sleep short
    timeline = build_timeline(events, now + timedelta(days=1))
    (sleep,) = _bars(timeline, "sleep")
    assert sleep.outcome == "cancelled" and sleep.end == events[-1].timestamp
    assert not timeline.live


def test_a_failed_run_on_sqlite_with_the_local_executor(tmp_path: Path) -> None:
    pyworkflow.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", **FAST)
    run_id = pyworkflow.start(flows.fails, "<b>bold</b>")
    with pytest.raises(ValueError, match="broken"):
        pyworkflow.get_result(run_id, timeout=20)
    events = get_events(run_id)
    assert pyworkflow.get_run(run_id).status == RunStatus.FAILED
    timeline = build_timeline(events, datetime.now(UTC))
    _check_geometry(timeline)
    steps = _bars(timeline, "step")
    assert [(b.attempt, b.outcome) for b in steps] == [(1, "retrying"), (2, "failed")]
    assert steps[-1].detail == "ValueError: broken: <b>bold</b>"
    assert len(_bars(timeline, "retry-wait")) == 1
    assert not timeline.live and timeline.end == events[-1].timestamp

    # retried: the failed attempt stays, new attempts follow on the same lane
    assert pyworkflow.client.retry_run(run_id)
    with pytest.raises(ValueError, match="broken"):
        pyworkflow.get_result(run_id, timeout=20)
    again = build_timeline(get_events(run_id), datetime.now(UTC))
    steps = _bars(again, "step")
    assert [b.outcome for b in steps] == ["retrying", "failed", "retrying", "failed"]
    assert [b.attempt for b in steps] == [1, 2, 3, 4]
    assert {b.lane for b in again.bars} == {0}


def test_hooks_disposed_without_payload_and_iterated() -> None:
    def event(seq: int, kind: EventType, cid: str | None, **payload: object) -> Event:
        return Event("r", seq, kind, cid, T0 + timedelta(seconds=seq), payload)

    events = [
        event(1, EventType.WORKFLOW_STARTED, None),
        event(2, EventType.HOOK_CREATED, "1", name="orders", token="t1"),
        event(3, EventType.HOOK_RECEIVED, "1", token="t1", data="1"),
        event(5, EventType.HOOK_RECEIVED, "1", token="t1", data="2"),
        event(6, EventType.HOOK_DISPOSED, "1", name="orders", token="t1"),
        event(7, EventType.HOOK_CREATED, "2", name="hook", token="t2"),
        event(8, EventType.HOOK_DISPOSED, "2", name="hook", token="t2"),
        event(9, EventType.STEP_SCHEDULED, "3", name="remote", attempt=1),
        event(11, EventType.STEP_COMPLETED, "3", name="remote", attempt=1, result="1"),
        event(12, EventType.STEP_SCHEDULED, "4", name="queued", attempt=1),
    ]
    timeline = build_timeline(events, T0 + timedelta(seconds=20))
    _check_geometry(timeline)
    hooks = _bars(timeline, "hook")
    assert [(b.name, b.outcome, b.duration.seconds, b.detail) for b in hooks] == [
        ("orders", "completed", 1, "payload received"),
        ("orders", "completed", 2, "payload 2 received"),
        ("hook", "cancelled", 1, "disposed without a payload"),
    ]
    remote, queued = _bars(timeline, "step")
    # a dispatched step with no recorded start: its bar starts when it was scheduled;
    # one not started yet waits for a worker
    assert (remote.start, remote.end, remote.outcome) == (
        events[7].timestamp,
        events[8].timestamp,
        "completed",
    )
    assert (queued.outcome, queued.end) == ("running", T0 + timedelta(seconds=20))
    assert queued.detail == "waiting for a worker"


def test_an_empty_log_and_a_zero_span() -> None:
    assert build_timeline([], T0).bars == ()
    one = [Event("r", 1, EventType.WORKFLOW_STARTED, None, T0, {})]
    timeline = build_timeline(one, T0)
    assert timeline.bars == () and [t.label for t in timeline.ticks] == ["0 ms"]


def test_odd_payloads_do_not_break_it() -> None:
    events = [
        Event("r", 1, EventType.STEP_STARTED, "1", T0, {"name": 3, "attempt": "two"}),
        Event("r", 2, EventType.STEP_RETRYING, "1", T0, {"due_at": "not a time"}),
        Event("r", 3, EventType.WAIT_CREATED, "2", T0, {"due_at": 5}),
        Event("r", 4, EventType.CHILD_WORKFLOW_FAILED, "9", T0, {}),
        Event("r", 5, EventType.HOOK_RECEIVED, "8", T0, {}),
    ]
    timeline = build_timeline(events, T0 + timedelta(seconds=1))
    _check_geometry(timeline)
    assert [(b.kind, b.name, b.attempt) for b in timeline.bars] == [
        ("step", "step", 1),
        ("retry-wait", "step", 1),
        ("sleep", "sleep", None),
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0123, "12 ms"),
        (1.5, "1.50 s"),
        (2, "2 s"),
        (42.25, "42.2 s"),
        (123, "2 m 3 s"),
        (3600 + 120, "1 h 2 m"),
        (7200, "2 h"),
        (3 * 86400 + 4 * 3600, "3 d 4 h"),
    ],
)
def test_durations_read_well(seconds: float, text: str) -> None:
    assert fmt(timedelta(seconds=seconds)) == text
