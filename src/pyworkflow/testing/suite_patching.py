"""EngineConformance cases for patched() and deprecate_patch() versioning markers (issue 15).

Mixed into :class:`~pyworkflow.testing.engine_suite.EngineConformance`: every
backend and executor plugin runs them. Tests use the class's fixtures
(``pw`` configures a fast runtime on the backend under test).

A deploy is simulated in-process: the workflows below read which version of
their code runs from :data:`code_version`, and a test changes it while runs
are suspended on a hook.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    NonDeterminismError,
    RunStatus,
    create_hook,
    deprecate_patch,
    get_events,
    get_result,
    get_run,
    patched,
    resume_hook,
    sleep,
    start,
    step,
    workflow,
)

__all__ = ["PatchingCases", "code_version"]

#: Which version of the workflows' code is deployed (changed by the tests).
code_version: dict[str, int] = {"v": 1}


@step()
async def patching_price(order: int) -> int:
    return order * 10


@step()
async def patching_discount(total: int) -> int:
    return total - 5


@step()
async def patching_ship(total: int) -> str:
    return f"shipped for {total}"


@workflow(name="patching_checkout")
async def patching_checkout(order: int, token: str) -> str:
    """v1: price, approval, ship; v2 adds a discount step behind ``patched``;
    v3 deprecates the patch; v4 removes it (the discount stays)."""
    version = code_version["v"]
    if version == 1:
        total = await patching_price(order)
    elif version == 2:
        fixed = patched("patching-discount")
        total = await patching_price(order)
        if fixed:
            total = await patching_discount(total)
    elif version == 3:
        deprecate_patch("patching-discount")
        total = await patching_discount(await patching_price(order))
    else:
        total = await patching_discount(await patching_price(order))
    await create_hook(token=token)
    return await patching_ship(total)


@workflow(name="patching_late")
async def patching_late(order: int, token: str) -> str:
    """v1: approval, ship; v2 adds a discount after the approval, behind ``patched``."""
    await create_hook(token=token)
    total = order * 10
    if code_version["v"] >= 2 and patched("patching-late-discount"):
        total = await patching_discount(total)
    return await patching_ship(total)


@workflow(name="patching_chain")
async def patching_chain(order: int, token: str) -> str:
    """The newest-first chain: v2 has patch "one"; v3 adds patch "two" above it."""
    version = code_version["v"]
    total = order * 10
    if version >= 3 and patched("patching-two"):
        total = await patching_discount(await patching_discount(total))
    elif version >= 2 and patched("patching-one"):
        total = await patching_discount(total)
    else:
        total = await patching_price(order)
    await create_hook(token=token)
    return await patching_ship(total)


@workflow(name="patching_twice")
async def patching_twice(order: int) -> list[bool]:
    """The same patch asked in a loop: one answer and one marker per run."""
    answers = []
    for _ in range(3):
        answers.append(patched("patching-loop"))
        await patching_price(order)
        await sleep("10ms")  # the next activation replays the answers
    return answers


def _suspended(run_id: str) -> None:
    """Wait until ``run_id`` is suspended on its hook (not on a dispatched step)."""
    deadline = time.monotonic() + 20
    while not (
        get_run(run_id).status == RunStatus.SUSPENDED
        and any(e.type == EventType.HOOK_CREATED for e in get_events(run_id))
    ):
        assert time.monotonic() < deadline, f"run {run_id} did not suspend: {get_run(run_id)}"
        time.sleep(0.02)


def _started(flow: Any, order: int) -> tuple[str, str]:
    """Start ``flow`` for ``order`` and wait until it waits on its hook; (run id, token)."""
    token = f"patching-{uuid.uuid4().hex}"
    run_id = start(flow, order, token)
    _suspended(run_id)
    return run_id, token


def _markers(run_id: str) -> list[tuple[str | None, str]]:
    return [
        (e.correlation_id, e.payload["name"])
        for e in get_events(run_id)
        if e.type == EventType.MARKER_RECORDED
    ]


def _steps(run_id: str) -> list[str]:
    return [e.payload["name"] for e in get_events(run_id) if e.type == EventType.STEP_COMPLETED]


class PatchingCases:
    """The versioning-marker checks (patched, deprecate_patch) of the engine conformance suite."""

    @pytest.fixture(autouse=True)
    def _first_version(self) -> Any:
        code_version["v"] = 1
        yield
        code_version["v"] = 1

    def test_patched_records_a_marker_and_old_runs_keep_the_old_branch(self, pw: str) -> None:
        old, old_token = _started(patching_checkout, 1)  # recorded by v1
        code_version["v"] = 2  # a deploy adds the patch and a step
        new, new_token = _started(patching_checkout, 2)
        resume_hook(old_token, "ok")
        resume_hook(new_token, "ok")
        assert get_result(old, timeout=20) == "shipped for 10"
        assert get_result(new, timeout=20) == "shipped for 15"
        assert _markers(old) == []
        assert _steps(old) == ["patching_price", "patching_ship"]
        # the marker is operation 1; the operations after it take the next ids
        assert _markers(new) == [("1", "patching-discount")]
        (marker,) = [e for e in get_events(new) if e.type == EventType.MARKER_RECORDED]
        assert dict(marker.payload) == {"kind": "patch", "name": "patching-discount"}
        assert _steps(new) == ["patching_price", "patching_discount", "patching_ship"]
        started = [e.correlation_id for e in get_events(new) if e.type == EventType.STEP_STARTED]
        assert started == ["2", "3", "5"]

    def test_deprecate_patch_replays_runs_with_and_without_the_marker(self, pw: str) -> None:
        code_version["v"] = 2
        marked, marked_token = _started(patching_checkout, 1)
        code_version["v"] = 3  # every pre-patch run has ended: the patch is deprecated
        unmarked, unmarked_token = _started(patching_checkout, 2)
        code_version["v"] = 4  # ... and removed once the marked runs have ended
        resume_hook(unmarked_token, "ok")
        assert get_result(unmarked, timeout=20) == "shipped for 15"
        assert _markers(unmarked) == []
        code_version["v"] = 3
        resume_hook(marked_token, "ok")
        assert get_result(marked, timeout=20) == "shipped for 5"
        assert _markers(marked) == [("1", "patching-discount")]

    def test_a_run_that_had_not_reached_the_patch_takes_the_new_branch(self, pw: str) -> None:
        run_id, token = _started(patching_late, 3)  # waits on its hook, before the patch
        code_version["v"] = 2
        resume_hook(token, "ok")
        assert get_result(run_id, timeout=20) == "shipped for 25"
        assert _markers(run_id) == [("2", "patching-late-discount")]

    def test_removing_a_patch_whose_marker_is_recorded_is_non_determinism(self, pw: str) -> None:
        code_version["v"] = 2
        run_id, token = _started(patching_checkout, 1)
        code_version["v"] = 1  # the patch removed without deprecate_patch, runs in flight
        resume_hook(token, "ok")
        with pytest.raises(NonDeterminismError) as info:
            get_result(run_id, timeout=20)
        assert "patch 'patching-discount'" in str(info.value)
        assert "step 'patching_price'" in str(info.value)
        assert get_run(run_id).status == RunStatus.FAILED

    def test_newest_first_patches_replay_each_generation(self, pw: str) -> None:
        runs = {}
        for version in (1, 2, 3):
            code_version["v"] = version
            runs[version] = _started(patching_chain, version)
        for _, token in runs.values():
            resume_hook(token, "ok")
        results = {v: get_result(run_id, timeout=20) for v, (run_id, _) in runs.items()}
        assert results == {1: "shipped for 10", 2: "shipped for 15", 3: "shipped for 20"}
        assert _markers(runs[1][0]) == []
        assert _markers(runs[2][0]) == [("1", "patching-one")]
        assert _markers(runs[3][0]) == [("1", "patching-two")]

    def test_a_patch_asked_again_in_a_run_keeps_its_first_answer(self, pw: str) -> None:
        run_id = start(patching_twice, 1)
        assert get_result(run_id, timeout=20) == [True, True, True]
        assert _markers(run_id) == [("1", "patching-loop")]
