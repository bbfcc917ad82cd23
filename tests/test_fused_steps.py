"""The fused path of sequential steps (``SequentialSteps._run_lone``): when it is taken, and that
every run it takes writes the log and ends as the general path does.

Each scenario runs twice, once as the engine runs it and once with the fused
path switched off (``runs_now`` answering no, so every step goes through
``_advance`` / ``run_step_attempt``), and the logs are compared with the
event-log pin's normalisation (clock and host values masked).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

import pyworkflow
from pyworkflow import runtime, step, workflow
from pyworkflow.engine import live, sequential
from pyworkflow.errors import WorkflowCancelledError

from .conftest import FAST
from .test_event_log_pin import _normal

_calls: dict[str, int] = {}
_started = threading.Event()
_release = threading.Event()


@step()
async def fused_inc(value: int) -> int:
    return value + 1


@step()
async def fused_suspending(value: int) -> int:
    await asyncio.sleep(0)  # suspends once: the rest of the attempt is awaited
    return value * 2


@step(timeout="5s")
async def fused_timed(value: int) -> int:
    return value + 10


@step(timeout="50ms", max_retries=0)
async def fused_too_slow() -> None:
    await anyio.sleep(5)


@step(max_retries=2, retry_base="10ms", jitter=0.0)
async def fused_flaky(key: str) -> str:
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] == 1:
        raise ValueError(f"first try of {key}")
    return f"ok {key}"


@step(max_retries=0)
async def fused_broken() -> None:
    raise KeyError("nope")


@step()
async def fused_waiting() -> str:
    _started.set()
    while not _release.is_set():
        await anyio.sleep(0.005)
    return "released"


@workflow
async def fused_sequence(n: int) -> int:
    value = 0
    for _ in range(n):
        value = await fused_inc(value)
    value = await fused_suspending(value)
    return await fused_inc(value)


@workflow
async def fused_mixed(n: int) -> list[int]:
    first = await fused_inc(n)
    pair = await asyncio.gather(fused_inc(first), fused_inc(first + 1))
    timed = await fused_timed(pair[1])
    return [first, *pair, timed, await fused_inc(timed)]


@workflow
async def fused_failures(key: str) -> list[str]:
    out = [str(await fused_inc(1))]
    out.append(await fused_flaky(key))
    try:
        await fused_broken()
    except KeyError:
        out.append("broken")
    try:
        await fused_too_slow()
    except TimeoutError as exc:
        out.append(str(exc))
    out.append(str(await fused_inc(2)))
    return out


@workflow
async def fused_cancelled() -> str:
    await fused_inc(0)
    await fused_waiting()
    await fused_inc(1)
    return "not cancelled"


@pytest.fixture(autouse=True)
def _memory_runtime() -> Iterator[None]:
    runtime.reset()
    runtime.configure(storage="memory://", **FAST)
    _calls.clear()
    _started.clear()
    _release.clear()
    yield


@pytest.fixture
def fused_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The step ids whose attempts the fused path started, in order."""
    taken: list[str] = []
    start = sequential.start_attempt

    def spy(*args: Any) -> Any:
        taken.append(args[4][1])  # ids: (run_id, step_id, name, attempt)
        return start(*args)

    monkeypatch.setattr(sequential, "start_attempt", spy)
    return taken


def _log(run_id: str) -> list[tuple[Any, ...]]:
    return [_normal(e) for e in pyworkflow.get_events(run_id)]


def _both_ways(
    monkeypatch: pytest.MonkeyPatch, scenario: Callable[[], str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The log of ``scenario``'s run on the engine, then with the fused path off."""
    fused = _log(scenario())
    runtime.reset()
    runtime.configure(storage="memory://", **FAST)
    _calls.clear()
    _started.clear()
    _release.clear()
    monkeypatch.setattr(live, "runs_now", lambda definition, body: False)
    general = _log(scenario())
    return fused, general


def test_sequential_steps_take_the_fused_path(fused_steps: list[str]) -> None:
    run_id = pyworkflow.start(fused_sequence, 4)
    assert pyworkflow.get_result(run_id, timeout=20) == 9
    assert fused_steps == ["1", "2", "3", "4", "5", "6"]


def test_gather_and_timeout_steps_take_the_general_path(fused_steps: list[str]) -> None:
    run_id = pyworkflow.start(fused_mixed, 1)
    assert pyworkflow.get_result(run_id, timeout=20) == [2, 3, 4, 14, 15]
    # 2 and 3 run side by side (a gather), 4 has a timeout: the general path runs them
    assert fused_steps == ["1", "5"]


def test_fused_and_general_paths_write_the_same_log(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario() -> str:
        run_id = pyworkflow.start(fused_sequence, 3)
        assert pyworkflow.get_result(run_id, timeout=20) == 7
        return run_id

    fused, general = _both_ways(monkeypatch, scenario)
    assert fused == general
    assert [kind for _, kind, _, _ in fused].count("step_completed") == 5


def test_gather_and_timeout_runs_log_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario() -> str:
        run_id = pyworkflow.start(fused_mixed, 1)
        assert pyworkflow.get_result(run_id, timeout=20) == [2, 3, 4, 14, 15]
        return run_id

    fused, general = _both_ways(monkeypatch, scenario)
    assert fused == general


def test_retry_failure_and_timeout_mid_path_behave_as_on_the_general_path(
    monkeypatch: pytest.MonkeyPatch, fused_steps: list[str]
) -> None:
    def scenario() -> str:
        run_id = pyworkflow.start(fused_failures, "k")
        assert pyworkflow.get_result(run_id, timeout=20) == [
            "2",
            "ok k",
            "broken",
            "step 'fused_too_slow' timed out after 0.05s",
            "3",
        ]
        return run_id

    fused, general = _both_ways(monkeypatch, scenario)
    assert fused == general
    kinds = [kind for _, kind, _, _ in fused]
    assert kinds.count("step_retrying") == 1 and kinds.count("step_failed") == 2
    # the retried step's first attempt ran fused, and its retry after the durable timer
    # too; the step with a timeout (4) did not
    assert fused_steps == ["1", "2", "2", "3", "5"]


def test_cancellation_while_a_fused_step_runs(
    monkeypatch: pytest.MonkeyPatch, fused_steps: list[str]
) -> None:
    def scenario() -> str:
        run_id = pyworkflow.start(fused_cancelled)
        assert _started.wait(10)
        pyworkflow.cancel(run_id)
        _release.set()
        with pytest.raises(WorkflowCancelledError):
            pyworkflow.get_result(run_id, timeout=20)
        return run_id

    fused, general = _both_ways(monkeypatch, scenario)
    assert fused == general
    kinds = [kind for _, kind, _, _ in fused]
    assert kinds[-1] == "workflow_cancelled"
    # the running step's result is kept; the step after it never starts
    assert [cid for _, kind, cid, _ in fused if kind == "step_completed"] == ["1", "2"]
    assert fused_steps == ["1", "2"]  # the step cancellation found running was fused
