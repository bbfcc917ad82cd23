"""New code deployed while a run sleeps, on Ray: ``patched()`` picks the branch.

The workflow module lives in the test's own directory, on the path of the
`pyworkflow worker` processes and (through ``runtime_env``) of the Ray workers.
A run of version 1 sleeps; the worker is stopped, version 2 (a ``patched()``
branch after the sleep) written, every Ray worker process killed (so the next
ones import version 2) and a new worker started. The run had not reached the
patch, so it takes the new branch, and records the patch's marker; code changed
without a patch, whose calls no longer fit the log, fails the run. (The engine
conformance cases of versioning swap code in the test process, which Ray
workers never see; this is the deployment they stand for.)
"""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import sys
from pathlib import Path

import pytest
from ray_cluster import RAY_ENV, RayCluster

from pyworkflow import (
    EventType,
    NonDeterminismError,
    RunStatus,
    get_events,
    get_result,
    get_run,
    runtime,
    start,
)
from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses

_HEAD = '''
import os

from pyworkflow import patched, sleep, step, workflow


@step(name="ray_versioned_mark")
async def mark(log: str, what: str) -> str:
    with open(log, "a") as fh:
        fh.write(f"{what} {os.getpid()}\\n")
    return what

'''
VERSION_1 = _HEAD + '''
@workflow(name="ray_versioned_flow")
async def versioned(log: str) -> list[str]:
    first = await mark(log, "first")
    await sleep("2s")
    return [first, await mark(log, "old")]
'''
VERSION_2 = _HEAD + '''
@workflow(name="ray_versioned_flow")
async def versioned(log: str) -> list[str]:
    first = await mark(log, "first")
    await sleep("2s")
    if patched("ray-new-step"):
        return [first, await mark(log, "new")]
    return [first, await mark(log, "old")]
'''


def _write(code: Path, text: str) -> None:
    (code / "ray_versioned.py").write_text(text)
    shutil.rmtree(code / "__pycache__", ignore_errors=True)  # no stale bytecode


VERSION_3 = _HEAD + '''
@workflow(name="ray_versioned_flow")
async def versioned(log: str) -> list[str]:
    await sleep("2s")  # the step that came first is gone: the recorded log no longer fits
    first = await mark(log, "first")
    return [first, await mark(log, "old")]
'''


def _deploy_while_sleeping(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_code: str
) -> tuple[str, list[list[str]], set[int]]:
    """Start a version 1 run, deploy ``new_code`` while it sleeps; once it has ended, its
    id, the step executions (what, pid) and the pids of the Ray workers killed."""
    code = tmp_path / "code"
    code.mkdir()
    _write(code, VERSION_1)
    storage_url = f"sqlite:///{tmp_path / 'pw.db'}"
    workers = WorkerProcesses(
        storage_url,
        tmp_path,
        modules="ray_versioned",
        pythonpath=code,
        settings={
            **RAY_ENV,
            "PYWORKFLOW_LEASE_SECONDS": "2",
            "PYWORKFLOW_POLL_INTERVAL": "0.1",
            "PYWORKFLOW_EXECUTOR": "ray",
            "PYWORKFLOW_RAY__ADDRESS": ray_cluster.address,
            # the Ray workers find the module where the deployment put it
            "PYWORKFLOW_RAY__RUNTIME_ENV": json.dumps({"env_vars": {"PYTHONPATH": str(code)}}),
        },
    )
    monkeypatch.syspath_prepend(str(code))
    sys.modules.pop("ray_versioned", None)
    module = importlib.import_module("ray_versioned")  # this process starts the run
    runtime.configure(storage=storage_url, embedded_worker=False, poll_interval=0.1)
    log = tmp_path / "calls.log"
    try:
        workers.start("v1")
        run_id = start(module.versioned, str(log))
        wait_for(
            lambda: get_run(run_id).status == RunStatus.SUSPENDED
            and EventType.WAIT_CREATED in [e.type for e in get_events(run_id)],
            90,
            "the run to sleep",
        )
        workers.procs["v1"].send_signal(signal.SIGTERM)  # the deploy: old worker down...
        workers.procs["v1"].wait(timeout=60)
        _write(code, new_code)  # ...new code in place...
        old = ray_cluster.worker_processes()
        for proc in old:  # ...and the Ray workers that imported version 1 gone
            proc.send_signal(signal.SIGKILL)
        gone = {p.pid for p in old}
        wait_for(lambda: not gone & {p.pid for p in ray_cluster.worker_processes()}, 30, "kill")
        workers.start("v2")
        wait_for(lambda: get_run(run_id).status.is_terminal, 120, "the run to end")
        ran = [line.split() for line in log.read_text().splitlines()]
        return run_id, ran, gone
    finally:
        runtime.reset()
        workers.stop_all()
        sys.modules.pop("ray_versioned", None)


def test_a_sleeping_run_takes_the_patched_branch_of_code_deployed_meanwhile(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, ran, gone = _deploy_while_sleeping(ray_cluster, tmp_path, monkeypatch, VERSION_2)
    runtime.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", embedded_worker=False)
    assert get_result(run_id, timeout=10) == ["first", "new"]
    events = get_events(run_id)
    markers = [e for e in events if e.type == EventType.MARKER_RECORDED]
    assert len(markers) == 1 and "ray-new-step" in json.dumps(markers[0].payload)
    assert [what for what, _ in ran] == ["first", "new"]  # the first step ran once
    assert int(ran[1][1]) not in gone  # in a Ray worker started after the deploy


def test_code_deployed_without_a_patch_that_no_longer_fits_the_log_fails_the_run(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, ran, _ = _deploy_while_sleeping(ray_cluster, tmp_path, monkeypatch, VERSION_3)
    runtime.configure(storage=f"sqlite:///{tmp_path / 'pw.db'}", embedded_worker=False)
    with pytest.raises(NonDeterminismError):
        get_result(run_id, timeout=10)
    assert get_run(run_id).status == RunStatus.FAILED
    assert [what for what, _ in ran] == ["first"]  # nothing of the new code's steps ran
