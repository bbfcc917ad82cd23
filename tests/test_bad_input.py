"""Bad configuration and corrupt stored data give clear errors; other runs go on."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

import pyworkflow
from pyworkflow import ConfigError, RunStatus, get_result, get_run, sleep, start, step, workflow
from pyworkflow.errors import CorruptDataError

from .conftest import FAST


@step()
async def echo(value: str) -> str:
    return value


@workflow
async def nap_then_echo(value: str) -> str:
    first = await echo(value)
    await sleep("0.5s")
    return first + "!"


def test_unknown_config_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        pyworkflow.configure(storag="memory://")
    message = str(info.value)
    assert "storag" in message and "storage" in message and "executor" in message


def test_unknown_storage_scheme_lists_schemes() -> None:
    pyworkflow.configure(storage="nosuch://x")
    with pytest.raises(ConfigError) as info:
        start(nap_then_echo, "x")
    assert "nosuch" in str(info.value)
    assert "memory" in str(info.value) and "sqlite" in str(info.value)


def test_unknown_executor_lists_executors() -> None:
    pyworkflow.configure(storage="memory://", executor="warp-drive")
    with pytest.raises(ConfigError) as info:
        start(nap_then_echo, "x")
    assert "warp-drive" in str(info.value) and "local" in str(info.value)


def test_unknown_serializer_lists_serializers() -> None:
    pyworkflow.configure(storage="memory://", serializer="yaml")
    with pytest.raises(ConfigError) as info:
        start(nap_then_echo, "x")
    assert "yaml" in str(info.value) and "json" in str(info.value) and "pickle" in str(info.value)


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOW_MAX_PAYLOAD_BYTES", "lots")
    with pytest.raises(ConfigError, match="PYWORKFLOW_MAX_PAYLOAD_BYTES"):
        start(nap_then_echo, "x")


def test_corrupt_event_payload_fails_that_run_only(tmp_path: Path) -> None:
    db = tmp_path / "pw.db"
    pyworkflow.configure(storage=f"sqlite:///{db}", **FAST)
    victim = start(nap_then_echo, "victim")
    deadline = time.monotonic() + 10
    while get_run(victim).status != RunStatus.SUSPENDED:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with sqlite3.connect(db) as conn:
        (seq,) = conn.execute(
            "SELECT seq FROM pyworkflow_events WHERE run_id = ? AND type = 'step_completed'",
            (victim,),
        ).fetchone()
        conn.execute(
            "UPDATE pyworkflow_events SET payload = '{not json' WHERE run_id = ? AND seq = ?",
            (victim, seq),
        )
    healthy = start(nap_then_echo, "healthy")
    assert get_result(healthy, timeout=20) == "healthy!"
    deadline = time.monotonic() + 20
    while not get_run(victim).status.is_terminal:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = get_run(victim)
    assert info.status == RunStatus.FAILED
    assert "CorruptDataError" in (info.error_message or "")
    assert f"seq {seq}" in (info.error_message or "") or str(seq) in (info.error_message or "")
    with pytest.raises(CorruptDataError, match=victim):
        pyworkflow.get_events(victim)


def test_corrupt_run_input_fails_that_run_only(tmp_path: Path) -> None:
    db = tmp_path / "pw.db"
    pyworkflow.configure(storage=f"sqlite:///{db}", embedded_worker=False)
    victim = start(nap_then_echo, "victim")
    healthy = start(nap_then_echo, "healthy")
    pyworkflow.shutdown()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE pyworkflow_runs SET input = 'garbage{' WHERE run_id = ?", (victim,))
    pyworkflow.configure(storage=f"sqlite:///{db}", embedded_worker=True, **FAST)
    assert get_result(healthy, timeout=20) == "healthy!"
    with pytest.raises(pyworkflow.WorkflowFailedError, match="CorruptDataError"):
        get_result(victim, timeout=20)


def test_arguments_that_do_not_fit_the_workflow_fail_the_run(tmp_path: Path) -> None:
    pyworkflow.configure(storage="memory://", **FAST)
    run_id = pyworkflow.start_workflow(nap_then_echo, ("a", "b", "c"))
    with pytest.raises(TypeError, match="argument"):
        get_result(run_id, timeout=10)
    assert get_run(run_id).status == RunStatus.FAILED
    assert get_result(start(nap_then_echo, "ok"), timeout=10) == "ok!"  # the worker is not stuck
