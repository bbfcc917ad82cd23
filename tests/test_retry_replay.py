"""Retrying a failed run from its failed step, and checking a code change against a log."""

from __future__ import annotations

from collections import Counter

import pytest

from pyworkflow import FatalError, RunStatus, get_result, get_run, sleep, start, step, workflow
from pyworkflow.client import check_replay, retry_run

bodies: Counter[str] = Counter()
state = {"broken": True, "variant": "same"}


@pytest.fixture(autouse=True)
def _reset() -> None:
    bodies.clear()
    state.update(broken=True, variant="same")


@step()
async def s1(x: int) -> int:
    bodies["s1"] += 1
    return x + 1


@step()
async def s2(x: int) -> int:
    bodies["s2"] += 1
    return x * 2


@step(max_retries=2, retry_base="0.01s")
async def s3(x: int) -> int:
    bodies["s3"] += 1
    if state["broken"]:
        raise FatalError("bug in s3")
    return x + 100


@step()
async def s4(x: int) -> int:
    bodies["s4"] += 1
    return -x


@workflow
async def four_steps(x: int) -> int:
    return await s4(await s3(await s2(await s1(x))))


def test_retry_resumes_from_the_failed_step(pw: str) -> None:
    run_id = start(four_steps, 1)
    with pytest.raises(FatalError, match="bug in s3"):
        get_result(run_id, timeout=10)
    assert dict(bodies) == {"s1": 1, "s2": 1, "s3": 1}
    state["broken"] = False  # the fix is deployed
    assert retry_run(run_id) is True
    assert get_result(run_id, timeout=10) == -104
    assert dict(bodies) == {"s1": 1, "s2": 1, "s3": 2, "s4": 1}
    info = get_run(run_id)
    assert info.status == RunStatus.COMPLETED and info.error is None
    assert retry_run(run_id) is False  # only failed runs are retried


@step()
async def other(x: int) -> int:
    return x


@workflow
async def evolving(x: int) -> int:
    y = await s1(x)
    if state["variant"] == "breaking":
        y = await other(y)
    await sleep("0.01s")
    return await s2(y)


def test_replay_reports_deterministic_and_first_divergence(pw: str) -> None:
    run_id = start(evolving, 1)
    assert get_result(run_id, timeout=10) == 4
    report = check_replay(run_id)
    assert report.deterministic and report.message is None
    state["variant"] = "breaking"
    report = check_replay(run_id)
    assert not report.deterministic
    assert report.position == "2"
    assert report.recorded == "sleep 'sleep'" and report.called == "step 'other'"
    assert "other" in (report.message or "")
    assert dict(bodies) == {"s1": 1, "s2": 1}  # checking ran no step body
