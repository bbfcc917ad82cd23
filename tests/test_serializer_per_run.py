"""A run keeps the serializer it started with (issue 12, finding 2).

The finding: runs started with ``json`` and resumed by a process configured
with ``PYWORKFLOW_SERIALIZER=pickle`` failed with "cannot decode pickle
payload", because every decode used the serializer configured now instead of
the one recorded on the run. Here the switch happens between real processes.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import pyworkflow
from pyworkflow import EventType, RunStatus, WorkflowFailedError, get_events, runtime
from pyworkflow import dispatch as pw_dispatch
from pyworkflow.engine import queued_owner
from pyworkflow.models import NewEvent, Run, utcnow
from pyworkflow.testing.engine_suite import Pipeline
from pyworkflow.testing.servers import wait_for
from pyworkflow.testing.workers import WorkerProcesses

FAST: dict[str, Any] = {"poll_interval": 0.05, "lease_seconds": 2.0, "drain_timeout": 2.0}

MODULE = "serializer_switch_flows"
FLOWS = '''
"""Workflows for tests/test_serializer_per_run.py (imported by worker subprocesses)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from pyworkflow import create_hook, step, workflow


@step()
async def price(sku: str, when: datetime) -> tuple[str, Decimal, datetime]:
    return (sku, Decimal("9.99"), when)


@workflow
async def order(token: str, sku: str, when: datetime) -> dict[str, Any]:
    first = await price(sku, when)
    payload = await create_hook(token=token)
    second = await price(payload["sku"], when)
    return {"first": first, "payload": payload, "second": second}
'''

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def _expected(sku: str, later: str) -> dict[str, Any]:
    return {
        "first": (sku, Decimal("9.99"), WHEN),
        "payload": {"sku": later},
        "second": (later, Decimal("9.99"), WHEN),
    }


def _stored_run(run_id: str) -> Run:
    rt = runtime.get_runtime()
    return rt.call(rt.storage.get_run, run_id)


@pytest.mark.slow
def test_runs_started_with_json_resume_in_processes_configured_with_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{MODULE}.py").write_text(FLOWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    flows = __import__(MODULE)
    db = tmp_path / "pw.db"
    storage = f"sqlite:///{db}"

    # this process starts two runs with json; its embedded worker takes them to their hooks
    pyworkflow.configure(storage=storage, serializer="json", **FAST)
    tokens = [f"order-{uuid.uuid4().hex}" for _ in range(2)]
    run_ids = [pyworkflow.start(flows.order, t, f"sku-{i}", WHEN) for i, t in enumerate(tokens)]

    def waiting() -> bool:
        return all(
            pyworkflow.get_run(r).status == RunStatus.SUSPENDED
            and any(e.type == EventType.HOOK_CREATED for e in get_events(r))
            for r in run_ids
        )

    wait_for(waiting, 60, "both runs to wait on their hooks")
    assert {_stored_run(r).serializer for r in run_ids} == {"json"}
    pyworkflow.configure(embedded_worker=False)  # from here on this process only reads

    pool = WorkerProcesses(
        storage,
        tmp_path,
        modules=MODULE,
        pythonpath=tmp_path,
        settings={"PYWORKFLOW_SERIALIZER": "pickle", "PYWORKFLOW_POLL_INTERVAL": "0.1"},
    )
    try:
        pool.start("pickle-worker")
        pickle_env = pool.env(PYWORKFLOW_EMBEDDED_WORKER="false")
        for i, token in enumerate(tokens):
            payload = f'{{"sku": "later-{i}"}}'
            resumed = subprocess.run(
                [sys.executable, "-m", "pyworkflow", "hooks", "resume", token, "--data", payload],
                env=pickle_env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert resumed.returncode == 0, resumed.stderr
        # a run started by a process whose default is pickle records pickle
        started = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import pyworkflow, {MODULE} as f, datetime as d; "
                f"print(pyworkflow.start(f.order, 'order-{uuid.uuid4().hex}', 'sku-p', "
                "d.datetime(2024, 5, 6, 7, 8, 9, tzinfo=d.UTC)))",
            ],
            env=pickle_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert started.returncode == 0, started.stderr
        pickle_run = started.stdout.strip().splitlines()[-1]

        for i, run_id in enumerate(run_ids):
            try:
                result = pyworkflow.get_result(run_id, timeout=120)
            except Exception as exc:
                raise AssertionError(f"{exc}\n{pool.log_text()}") from exc
            assert result == _expected(f"sku-{i}", f"later-{i}")
            first = result["first"]
            assert type(first) is tuple and type(first[1]) is Decimal and first[2] == WHEN
            assert _stored_run(run_id).serializer == "json"
        wait_for(
            lambda: pyworkflow.get_run(pickle_run).status == RunStatus.SUSPENDED,
            120,
            "the pickle run to wait on its hook",
        )
        assert _stored_run(pickle_run).serializer == "pickle"
    finally:
        pool.stop_all()
    assert "cannot decode" not in pool.log_text()


def _orphan_run(serializer: str, events: list[NewEvent], *, due: bool = True) -> str:
    """Store a run of :class:`Pipeline` whose recorded serializer is ``serializer``.

    Its input is JSON, so a worker that ignored the recorded name would run it.
    """
    now = utcnow()
    run = Run(
        run_id=uuid.uuid4().hex,
        workflow_name=Pipeline.name,
        status=RunStatus.PENDING,
        input='{"args": [5], "kwargs": {}}',
        serializer=serializer,
        created_at=now,
        updated_at=now,
        wake_at=now if due else None,
    )
    rt = runtime.get_runtime()
    rt.call(rt.storage.create_run, run, events)
    return run.run_id


def test_a_run_whose_serializer_is_not_installed_fails_once_naming_it() -> None:
    pyworkflow.configure(storage="memory://", **FAST)
    run_id = _orphan_run("msgpack-x", [NewEvent(EventType.WORKFLOW_STARTED, None, {})])
    with pytest.raises(WorkflowFailedError) as info:
        pyworkflow.get_result(run_id, timeout=30)
    message = str(info.value)
    assert "'msgpack-x'" in message and "pyworkflow_register_serializers" in message
    assert f"pyworkflow runs retry {run_id}" in message
    kinds = [e.type for e in get_events(run_id)]
    assert kinds == [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_FAILED]  # once, no loop


def test_a_step_worker_without_the_runs_serializer_fails_the_run() -> None:
    pyworkflow.configure(storage="memory://", embedded_worker=False, **FAST)
    started = NewEvent(EventType.WORKFLOW_STARTED, None, {})
    scheduled = NewEvent(
        EventType.STEP_SCHEDULED,
        "1",
        {"name": "Double", "attempt": 1, "input": '{"args": [5], "kwargs": {}}'},
    )
    # not due: only the step message below touches the run
    run_id = _orphan_run("msgpack-x", [started, scheduled], due=False)
    rt = runtime.get_runtime()
    until = utcnow() + timedelta(minutes=10)
    rt.call(rt.storage.set_step_lease, run_id, "1", queued_owner(1), until)
    outcome = rt.call(pw_dispatch.run_dispatched_step, rt, run_id, "1", 1, "w1")
    assert outcome == "workflow_failed"
    run = pyworkflow.get_run(run_id)
    assert run.status == RunStatus.FAILED
    assert "'msgpack-x'" in (run.error_message or "")
    kinds = [e.type for e in get_events(run_id)]
    assert EventType.STEP_STARTED not in kinds  # the body never ran
