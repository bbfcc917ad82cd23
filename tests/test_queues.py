"""Queues under the test harness (virtual time): limits, priority, partitions, dedup, cancel."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest

from pyworkflow import RunStatus, sleep, step, workflow
from pyworkflow.config import load_settings
from pyworkflow.errors import ConfigError
from pyworkflow.queues import parse_rate, queue_configs, queue_rank
from pyworkflow.testing import WorkflowEnvironment


@workflow(name="queues.hold")
async def hold(tag: str, minutes: int = 60) -> str:
    await sleep(timedelta(minutes=minutes))
    return tag


@workflow(name="queues.default_queue", queue="mail")
async def mail(tag: str) -> str:
    await sleep("1h")
    return tag


def _env(**queues: dict[str, object]) -> WorkflowEnvironment:
    return WorkflowEnvironment(queues=queues)


def _statuses(env: WorkflowEnvironment, ids: list[str]) -> list[RunStatus]:
    return [env.sync.get_run(i).status for i in ids]


def test_concurrency_admits_at_most_n_and_the_next_when_one_ends() -> None:
    with _env(q={"concurrency": 2}) as env:
        ids = [env.sync.start_workflow(hold, (f"r{i}", 60 + i), queue="q") for i in range(5)]
        assert _statuses(env, ids) == [RunStatus.SUSPENDED] * 2 + [RunStatus.QUEUED] * 3
        env.sync.advance("60m")  # r0 ends: r2 is admitted in its place
        assert _statuses(env, ids)[:3] == [
            RunStatus.COMPLETED,
            RunStatus.SUSPENDED,
            RunStatus.SUSPENDED,
        ]
        assert _statuses(env, ids)[3:] == [RunStatus.QUEUED] * 2
        assert [env.sync.result(i) for i in ids] == [f"r{i}" for i in range(5)]
        infos = [env.sync.get_run(i) for i in ids]
        assert all(info.queue == "q" and info.admitted_at is not None for info in infos)


def test_priority_goes_first_and_aging_prevents_starvation() -> None:
    with _env(q={"concurrency": 1, "priority_aging": "1m"}) as env:
        first = env.sync.start_workflow(hold, ("first",), queue="q")
        low = env.sync.start_workflow(hold, ("low",), queue="q", priority=0)
        env.sync.advance("30m")  # low has waited 30 minutes: worth 30 priority points
        high = env.sync.start_workflow(hold, ("high",), queue="q", priority=10)
        higher = env.sync.start_workflow(hold, ("higher",), queue="q", priority=100)
        order = []
        for _ in range(4):
            env.sync.advance("60m")
            for name, run_id in (("low", low), ("high", high), ("higher", higher)):
                info = env.sync.get_run(run_id)
                if info.admitted_at is not None and name not in order:
                    order.append(name)
        # higher (100 points) beats low (30 points of waiting); low beats high (10 points)
        assert order == ["higher", "low", "high"]
        assert env.sync.get_run(first).status is RunStatus.COMPLETED


def test_partition_limit_passes_over_a_full_key() -> None:
    with _env(q={"partition_concurrency": 1}) as env:
        a1 = env.sync.start_workflow(hold, ("a1",), queue="q", partition_key="A")
        a2 = env.sync.start_workflow(hold, ("a2",), queue="q", partition_key="A")
        b1 = env.sync.start_workflow(hold, ("b1",), queue="q", partition_key="B")
        assert _statuses(env, [a1, a2, b1]) == [
            RunStatus.SUSPENDED,
            RunStatus.QUEUED,
            RunStatus.SUSPENDED,
        ]
        assert env.sync.result(a2) == "a2"


def test_rate_limits_admissions_per_window() -> None:
    with _env(q={"rate": "2/10m"}) as env:
        ids = [env.sync.start_workflow(hold, (f"r{i}", 1), queue="q") for i in range(5)]
        assert sum(s is not RunStatus.QUEUED for s in _statuses(env, ids)) == 2
        env.sync.advance("9m")
        assert sum(s is not RunStatus.QUEUED for s in _statuses(env, ids)) == 2
        env.sync.advance("2m")
        assert sum(s is not RunStatus.QUEUED for s in _statuses(env, ids)) == 4
        starts = sorted(env.sync.get_run(i).admitted_at for i in ids[:4])  # type: ignore[type-var]
        assert starts[2] - starts[0] >= timedelta(minutes=10)


def test_dedup_key_returns_the_queued_or_running_run() -> None:
    with _env(q={"concurrency": 1}) as env:
        first = env.sync.start_workflow(hold, ("a",), queue="q", dedup_key="k")
        waiting = env.sync.start_workflow(hold, ("b",), queue="q", dedup_key="w")
        assert env.sync.start_workflow(hold, ("c",), queue="q", dedup_key="k") == first
        assert env.sync.start_workflow(hold, ("d",), queue="q", dedup_key="w") == waiting
        assert env.sync.result(first) == "a"
        again = env.sync.start_workflow(hold, ("e",), queue="q", dedup_key="k")
        assert again not in (first, waiting)


def test_cancelling_a_queued_run_ends_it_without_running_it() -> None:
    with _env(q={"concurrency": 1}) as env:
        running = env.sync.start_workflow(hold, ("a",), queue="q")
        queued = env.sync.start_workflow(hold, ("b",), queue="q")
        assert env.sync.cancel(queued) is True
        info = env.sync.get_run(queued)
        assert info.status is RunStatus.CANCELLED and info.admitted_at is None
        types = [e.type.value for e in env.sync.events(queued)]
        assert types == ["workflow_started", "cancel_requested", "workflow_cancelled"]
        assert env.sync.result(running) == "a"


def test_a_workflows_default_queue_and_an_unlimited_queue() -> None:
    with _env(mail={"concurrency": 1}) as env:
        a = env.sync.start(mail, "a")
        b = env.sync.start(mail, "b")
        assert _statuses(env, [a, b]) == [RunStatus.SUSPENDED, RunStatus.QUEUED]
        assert env.sync.get_run(b).queue == "mail"
        # a queue without limits admits at once (the run still records its queue)
        free = env.sync.start_workflow(hold, ("x",), queue="other")
        assert env.sync.get_run(free).status is RunStatus.SUSPENDED
        assert env.sync.get_run(free).queue == "other"


def test_bad_queue_options_are_refused_before_anything_is_written() -> None:
    with _env() as env:
        with pytest.raises(TypeError, match="priority must be an int"):
            env.sync.start_workflow(hold, ("a",), queue="q", priority="1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority must be an int"):
            env.sync.start_workflow(hold, ("a",), queue="q", priority=True)
        with pytest.raises(ValueError, match="invalid queue name"):
            env.sync.start_workflow(hold, ("a",), queue="no spaces")
        with pytest.raises(TypeError, match="dedup_key"):
            env.sync.start_workflow(hold, ("a",), queue="q", dedup_key=3)  # type: ignore[arg-type]


def test_queue_config_is_parsed_strictly() -> None:
    settings = load_settings(
        {"queues": {"a": {"concurrency": 3, "rate": "20/5s", "priority_aging": "30s"}}},
        environ={"PYWORKFLOW_QUEUES__B__WORKER_CONCURRENCY": "2"},
    )
    configs = queue_configs(settings)
    assert configs["a"].concurrency == 3 and configs["a"].rate == (20, timedelta(seconds=5))
    assert configs["a"].priority_aging == 30.0
    assert configs["b"].worker_concurrency == 2 and configs["b"].limited
    for bad, match in (
        ({"concurrency": "3"}, "positive integer"),
        ({"concurrency": 0}, "positive integer"),
        ({"concurrency": True}, "positive integer"),
        ({"rate": "lots"}, "invalid"),
        ({"rate": 5}, "must be a string"),
        ({"speed": 1}, "unknown queue option"),
    ):
        with pytest.raises(ConfigError, match=match):
            queue_configs(load_settings({"queues": {"x": bad}}, environ={}))


def test_rates_and_ranks() -> None:
    assert parse_rate("100/min") == (100, timedelta(minutes=1))
    assert parse_rate("3/second") == (3, timedelta(seconds=1))
    with pytest.raises(ValueError, match="count must be at least 1"):
        parse_rate("0/s")
    from datetime import UTC, datetime

    t = datetime(2026, 1, 1, tzinfo=UTC)
    first = queue_rank(t, 2, 60.0)
    assert first >= t.timestamp() - 120.0 and queue_rank(t, 2, 60.0) > first


@workflow(name="queues.call_api", queue="api")
async def call_api(n: int) -> int:
    await sleep("1m")
    return n * 2


@workflow(name="queues.fan_out")
async def fan_out(count: int) -> list[int]:
    import asyncio

    return list(await asyncio.gather(*(call_api(i) for i in range(count))))


def test_children_of_a_queued_workflow_wait_for_their_queue() -> None:
    """The recipe for a step-level limit: the protected call as a child workflow of a queue."""
    with _env(api={"concurrency": 2}) as env:
        parent = env.sync.start(fan_out, 5)
        runtime = env.runtime
        page = runtime.call(functools.partial(runtime.storage.list_runs, parent_run_id=parent))
        children = page.runs
        statuses = sorted(c.status.value for c in children)
        assert statuses == ["queued"] * 3 + ["suspended"] * 2
        assert env.sync.result(parent) == [0, 2, 4, 6, 8]
        admitted = sorted(
            env.sync.get_run(c.run_id).admitted_at  # type: ignore[misc]
            for c in children
        )
        # admitted two at a time, a minute apart
        assert admitted[1] == admitted[0] and admitted[2] - admitted[0] == timedelta(minutes=1)


_active: list[int] = [0, 0]  # [now, most at once]


@step(name="queues.limited_call", queue="llm")
async def limited_call(n: int) -> int:
    import anyio

    _active[0] += 1
    _active[1] = max(_active[1], _active[0])
    try:
        await anyio.sleep(0.02)  # real time: other attempts could overlap meanwhile
        return n
    finally:
        _active[0] -= 1


@workflow(name="queues.many_calls")
async def many_calls(count: int) -> list[int]:
    import asyncio

    return list(await asyncio.gather(*(limited_call(i) for i in range(count))))


def test_step_queue_holds_at_most_concurrency_attempts_at_once() -> None:
    _active[:] = [0, 0]
    with _env(llm={"concurrency": 2}) as env:
        assert env.sync.run(many_calls, 8) == list(range(8))
    assert _active == [0, 2]
    _active[:] = [0, 0]
    with _env() as env:  # the same step without limits: they overlap freely
        assert env.sync.run(many_calls, 8) == list(range(8))
    assert _active[1] > 2


def test_a_bad_step_queue_fails_at_declaration() -> None:
    with pytest.raises(ValueError, match="invalid step queue"):

        @step(queue="no spaces")
        async def bad() -> None:
            return None


@workflow(name="queues.looping", queue="q")
async def looping(left: int) -> int:
    await sleep("1m")
    if left > 0:
        from pyworkflow import continue_as_new

        continue_as_new(left - 1)
    return left


def test_a_run_continued_as_new_keeps_its_place_in_the_queue() -> None:
    with _env(q={"concurrency": 1}) as env:
        first = env.sync.start(looping, 2)
        other = env.sync.start_workflow(hold, ("other", 1), queue="q")
        env.sync.advance("1m")  # the first run continued: its next run holds the place
        runtime = env.runtime
        page = runtime.call(runtime.storage.list_runs)
        chain = [r for r in page.runs if r.workflow_name == "queues.looping"]
        assert len(chain) == 2
        live = next(r for r in chain if r.run_id != first)
        assert live.queue == "q" and live.status is not RunStatus.QUEUED
        assert env.sync.get_run(other).status is RunStatus.QUEUED
        assert env.sync.result(first) == 0
        assert env.sync.result(other) == "other"


_fail_once: list[bool] = [True]


@step(name="queues.flaky", max_retries=0)
async def flaky() -> str:
    if _fail_once[0]:
        _fail_once[0] = False
        raise RuntimeError("down")
    return "up"


@workflow(name="queues.fragile", queue="q")
async def fragile() -> str:
    return await flaky()


def test_a_retried_run_of_a_limited_queue_waits_in_it_again() -> None:
    _fail_once[0] = True
    with _env(q={"concurrency": 1}) as env:
        failed = env.sync.start(fragile)
        assert env.sync.get_run(failed).status is RunStatus.FAILED
        holder = env.sync.start_workflow(hold, ("h",), queue="q")
        runtime = env.runtime
        from pyworkflow.client import _retry

        assert runtime.call(_retry, runtime, failed) is RunStatus.QUEUED
        env.sync.advance(0)
        assert env.sync.get_run(failed).status is RunStatus.QUEUED  # the holder has the place
        assert env.sync.result(holder) == "h"
        assert env.sync.result(failed) == "up"
