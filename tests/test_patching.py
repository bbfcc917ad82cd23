"""Versioning with ``patched()`` (issue 15): a deploy while runs are in flight.

The must-show runs real ``pyworkflow worker`` processes on one SQLite file:
runs start on version 1 of a workflow module, the worker stops while they
wait on a hook, the module is edited to add a ``patched()`` branch and a new
step, and a worker on the new code finishes the old runs the old way and new
runs the new way. The other tests pin the API's errors, the replay of
exported histories (``pyworkflow.testing.replay``, ``pyworkflow replay``,
``pyworkflow runs replay``) and a patch under the virtual-clock environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pyworkflow
from pyworkflow import (
    EventType,
    RunStatus,
    create_hook,
    deprecate_patch,
    get_events,
    get_result,
    get_run,
    patched,
    resume_hook,
    runtime,
    sleep,
    start,
    step,
    workflow,
)
from pyworkflow.history import export_history
from pyworkflow.testing import ReplayMismatchError, WorkflowEnvironment, replay
from pyworkflow.testing.workers import WorkerProcesses

# ----- the must-show: a deploy between two worker processes -----

SHOP_V1 = '''
"""Version 1 of the shop's checkout."""
from pyworkflow import create_hook, step, workflow


@step()
async def price(order: int) -> int:
    return order * 10


@step()
async def ship(order: int, total: int) -> str:
    return f"order {order} shipped for {total}"


@workflow(name="patchdemo_checkout")
async def checkout(order: int) -> str:
    total = await price(order)
    await create_hook(token=f"patchdemo-approve-{order}")
    return await ship(order, total)
'''

SHOP_V2 = '''
"""Version 2: a discount step behind patched("fix-discount")."""
from pyworkflow import create_hook, patched, step, workflow


@step()
async def price(order: int) -> int:
    return order * 10


@step()
async def discount(total: int) -> int:
    return total - 5


@step()
async def ship(order: int, total: int) -> str:
    return f"order {order} shipped for {total}"


@workflow(name="patchdemo_checkout")
async def checkout(order: int) -> str:
    fixed = patched("fix-discount")
    total = await price(order)
    if fixed:
        total = await discount(total)
    await create_hook(token=f"patchdemo-approve-{order}")
    return await ship(order, total)
'''


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _waiting_on_hook(run_id: str) -> bool:
    info = get_run(run_id)
    assert info.status not in (RunStatus.FAILED, RunStatus.CANCELLED), info
    return info.status == RunStatus.SUSPENDED and any(
        e.type == EventType.HOOK_CREATED for e in get_events(run_id)
    )


def _kinds(run_id: str) -> list[str]:
    return [e.type.value for e in get_events(run_id)]


def _steps(run_id: str) -> list[str]:
    return [e.payload["name"] for e in get_events(run_id) if e.type == EventType.STEP_COMPLETED]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[WorkerProcesses]:
    (tmp_path / "patchdemo_shop.py").write_text(SHOP_V1)
    workers = WorkerProcesses(
        f"sqlite:///{tmp_path / 'pw.db'}",
        tmp_path,
        modules="patchdemo_shop",
        pythonpath=tmp_path,
        # no stale bytecode when the module is edited within the same second
        settings={"PYWORKFLOW_POLL_INTERVAL": "0.1", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    runtime.reset()
    pyworkflow.configure(storage=workers.storage_url, embedded_worker=False)
    try:
        yield workers
    finally:
        workers.stop_all()
        runtime.reset()


def _start_runs(workers: WorkerProcesses, orders: list[int]) -> list[str]:
    """Start runs from a client process that imports the module as it is now."""
    script = textwrap.dedent(
        f"""
        import pyworkflow, patchdemo_shop
        for order in {orders!r}:
            print(pyworkflow.start(patchdemo_shop.checkout, order), flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=workers.env(PYWORKFLOW_EMBEDDED_WORKER="false"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _cli(workers: WorkerProcesses, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyworkflow", *args],
        env=workers.env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workers.directory,
    )


@pytest.mark.slow
def test_a_deploy_adds_a_patch_old_runs_finish_the_old_way(shop: WorkerProcesses) -> None:
    tmp_path = shop.directory
    shop.start("v1")
    old_runs = _start_runs(shop, [1, 2, 3])
    _wait(lambda: all(_waiting_on_hook(r) for r in old_runs), 60, "v1 runs to wait on the hook")
    shop.stop_all()  # the deploy: the worker stops while the runs wait on their hooks
    (tmp_path / "old.json").write_text(export_history(old_runs[0]))

    (tmp_path / "patchdemo_shop.py").write_text(SHOP_V2)
    # before starting the new code: it still replays the recorded runs and histories
    checked = _cli(shop, "runs", "replay", old_runs[1])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "deterministic" in checked.stdout
    checked = _cli(shop, "replay", str(tmp_path / "old.json"))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    shop.start("v2")
    new_runs = _start_runs(shop, [4, 5])
    _wait(lambda: all(_waiting_on_hook(r) for r in new_runs), 60, "v2 runs to wait on the hook")
    for order in (1, 2, 3, 4, 5):
        resume_hook(f"patchdemo-approve-{order}", "approved")
    results = [get_result(r, timeout=60) for r in old_runs + new_runs]
    assert results == [
        "order 1 shipped for 10",
        "order 2 shipped for 20",
        "order 3 shipped for 30",
        "order 4 shipped for 35",
        "order 5 shipped for 45",
    ], shop.log_text()
    for run_id in old_runs:
        assert get_run(run_id).status == RunStatus.COMPLETED
        assert "marker_recorded" not in _kinds(run_id)
        assert _steps(run_id) == ["price", "ship"]
        assert "workflow_resumed" in _kinds(run_id)  # replayed by the v2 worker
    for run_id in new_runs:
        markers = [
            (e.correlation_id, dict(e.payload))
            for e in get_events(run_id)
            if e.type == EventType.MARKER_RECORDED
        ]
        assert markers == [("1", {"kind": "patch", "name": "fix-discount"})]
        assert _steps(run_id) == ["price", "discount", "ship"]
    assert "NonDeterminismError" not in shop.log_text()
    # the timeline shows the marker
    shown = _cli(shop, "runs", "show", new_runs[0])
    assert shown.returncode == 0, shown.stderr
    assert "marker_recorded fix-discount" in shown.stdout


# ----- the API's errors -----


@workflow(name="patching_test_bad_ids")
async def bad_ids(patch_id: Any) -> str:
    try:
        patched(patch_id)
    except (TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


@step()
async def patching_test_in_step() -> str:
    try:
        patched("in-a-step")
    except RuntimeError as exc:
        return str(exc)
    return "accepted"


@workflow(name="patching_test_step_call")
async def patch_in_step() -> str:
    return await patching_test_in_step()


@pytest.fixture
def memory() -> Iterator[None]:
    runtime.reset()
    pyworkflow.configure(storage="memory://", poll_interval=0.05)
    yield
    runtime.reset()


@pytest.mark.parametrize(
    ("patch_id", "error"),
    [
        (None, "TypeError: patched(): the patch id must be a str, got NoneType"),
        (42, "TypeError: patched(): the patch id must be a str, got int"),
        ("", "ValueError: patched(): the patch id must be 1-200 characters, got 0"),
        ("x" * 201, "ValueError: patched(): the patch id must be 1-200 characters, got 201"),
        ("fix\ndiscount", "ValueError: patched(): the patch id 'fix\\ndiscount' holds a"),
        ("fix discount, v2 ✓", "accepted"),
    ],
)
def test_a_bad_patch_id_raises_in_the_workflow(memory: None, patch_id: Any, error: str) -> None:
    assert get_result(start(bad_ids, patch_id), timeout=10).startswith(error)


def test_outside_a_workflow_patched_and_deprecate_patch_raise() -> None:
    with pytest.raises(RuntimeError, match=r"patched\(\) can only be called inside a workflow"):
        patched("fix-discount")
    with pytest.raises(RuntimeError, match=r"deprecate_patch\(\) can only be called inside"):
        deprecate_patch("fix-discount")
    with pytest.raises(ValueError, match="1-200 characters"):
        deprecate_patch("")


def test_inside_a_step_body_patched_raises(memory: None) -> None:
    message = get_result(start(patch_in_step), timeout=10)
    assert message.startswith("patched() cannot be called inside a step body")


# ----- replaying exported histories against the patched code -----

#: The deployed version of ``invoice`` (1: before the patch, 2: patched, 3: deprecated, 4: removed).
version = {"v": 1}


@step()
async def patching_test_total(amount: int) -> int:
    return amount


@step()
async def patching_test_tax(total: int) -> int:
    return total + total // 10


@step()
async def patching_test_send(total: int) -> str:
    return f"invoice for {total}"


@workflow(name="patching_test_invoice")
async def invoice(amount: int) -> str:
    total = await patching_test_total(amount)
    if version["v"] == 2:
        if patched("add-tax"):
            total = await patching_test_tax(total)
    elif version["v"] == 3:
        deprecate_patch("add-tax")
        total = await patching_test_tax(total)
    elif version["v"] == 4:
        total = await patching_test_tax(total)
    return await patching_test_send(total)


@workflow(name="patching_test_tail")
async def tail(amount: int) -> str:
    """A patch after the last operation of a completed pre-patch run."""
    sent = await patching_test_send(amount)
    if version["v"] >= 2 and patched("audit"):
        await patching_test_total(amount)
    return sent


def _history(flow: Any, at: int, amount: int) -> dict[str, Any]:
    """A completed run of ``flow`` recorded by code version ``at``, exported."""
    version["v"] = at
    run_id = start(flow, amount)
    get_result(run_id, timeout=10)
    data: dict[str, Any] = json.loads(export_history(run_id))
    return data


@pytest.fixture
def histories(memory: None) -> Iterator[dict[int, dict[str, Any]]]:
    try:
        yield {v: _history(invoice, v, 100) for v in (1, 2, 3)}
    finally:
        version["v"] = 1


def test_a_pre_patch_history_replays_against_the_patched_code(
    histories: dict[int, dict[str, Any]],
) -> None:
    assert [e["type"] for e in histories[2]["events"]].count("marker_recorded") == 1
    version["v"] = 2
    reports = replay([histories[1], histories[2]], workflows=[invoice])
    assert [r.operations for r in reports] == [2, 4]  # the marker is an operation


def test_deprecate_patch_replays_histories_with_and_without_the_marker(
    histories: dict[int, dict[str, Any]],
) -> None:
    version["v"] = 3
    replay([histories[2], histories[3]], workflows=[invoice])
    # ... but not one recorded before the patch: wait for those runs to end first
    with pytest.raises(ReplayMismatchError) as info:
        replay(histories[1], workflows=[invoice])
    assert "step 'patching_test_send'" in str(info.value)
    assert "step 'patching_test_tax'" in str(info.value)


def test_removing_the_patch_call_fails_histories_holding_its_marker(
    histories: dict[int, dict[str, Any]],
) -> None:
    version["v"] = 4
    replay(histories[3], workflows=[invoice])
    with pytest.raises(ReplayMismatchError) as info:
        replay(histories[2], workflows=[invoice])
    (report,) = info.value.reports
    assert (report.position, report.recorded, report.called) == (
        "2",
        "patch 'add-tax'",
        "step 'patching_test_tax'",
    )


def test_a_completed_run_replays_a_patch_added_after_its_end(memory: None) -> None:
    try:
        history = _history(tail, 1, 7)
        version["v"] = 2
        (report,) = replay(history, workflows=[tail])
        assert report.operations == 1
        run_id = start(tail, 7)  # a new run takes the patch
        assert get_result(run_id, timeout=10) == "invoice for 7"
        assert [e.type for e in get_events(run_id)].count(EventType.MARKER_RECORDED) == 1
    finally:
        version["v"] = 1


# ----- a patch deployed during a month-long sleep, on the virtual clock -----


@step()
async def patching_test_remind(user: str) -> str:
    return f"reminded {user}"


@step()
async def patching_test_offer(user: str) -> str:
    return f"offer sent to {user}"


@workflow(name="patching_test_trial")
async def trial(user: str) -> list[str]:
    offer = version["v"] >= 2 and patched("trial-offer")
    done = [await patching_test_remind(user)]
    await sleep("30d")
    if offer:
        done.append(await patching_test_offer(user))
    await create_hook(token=f"patching-test-{user}")
    return done


@pytest.mark.anyio
async def test_runs_sleeping_through_a_deploy_keep_their_version() -> None:
    try:
        async with WorkflowEnvironment() as env:
            version["v"] = 1
            old = await env.start(trial, "ada")
            await env.advance("1d")
            version["v"] = 2  # deployed while "ada" sleeps for 30 days
            new = await env.start(trial, "bob")
            await env.advance("31d")
            await env.resume_hook("patching-test-ada", None)
            await env.resume_hook("patching-test-bob", None)
            assert await env.result(old) == ["reminded ada"]
            assert await env.result(new) == ["reminded bob", "offer sent to bob"]
            kinds = [e.type for e in await env.events(new)]
            assert kinds.count(EventType.MARKER_RECORDED) == 1
    finally:
        version["v"] = 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
