"""Storage errors are clear and nothing disappears silently (issue 12, finding 5).

SQLite: a path that is not a database is a ConfigError naming the path.
File: a run whose row file is missing or truncated is rebuilt from its JSONL log
(the truth) and resumed; one that cannot be rebuilt is listed as failed and
logged, never dropped without a word. The Redis and PostgreSQL parts live in
the plugins' tests (real servers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from loguru import logger

import pyworkflow
from pyworkflow import ConfigError, RunStatus, get_result, get_run, sleep, start, step, workflow
from pyworkflow.errors import CorruptDataError
from pyworkflow.storage.file import FileStorage
from pyworkflow.storage.sqlite import SQLiteStorage

from ..conftest import FAST


@step()
async def double(value: int) -> int:
    return value * 2


@workflow
async def double_after_nap(value: int) -> int:
    """One step, then a durable sleep, then another step."""
    first = await double(value)
    await sleep("0.3s")
    return await double(first)


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Messages PyWorkflow logs at WARNING and above during the test."""
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    logger.enable("pyworkflow")
    yield messages
    logger.remove(handler)
    logger.disable("pyworkflow")


# ----- SQLite -----


@pytest.mark.anyio
async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 40)
    storage = SQLiteStorage(f"sqlite:///{path}")
    with pytest.raises(ConfigError) as info:
        await storage.open()
    message = str(info.value)
    assert str(path) in message and "config key 'storage'" in message
    assert "not a SQLite database" in message and "point 'storage' at" in message
    assert path.read_text().startswith("these are my notes")  # left alone


def test_sqlite_not_a_database_through_the_api(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"\x00garbage" * 100)
    pyworkflow.configure(storage=f"sqlite:///{path}", embedded_worker=False)
    with pytest.raises(pyworkflow.PyWorkflowError, match="not a SQLite database"):
        pyworkflow.list_runs()


@pytest.mark.anyio
async def test_sqlite_path_that_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pw.db"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"pw\.db.*not a folder"):
        await SQLiteStorage(f"sqlite:///{folder}").open()


# ----- File storage -----


def _suspend_one(store: Path) -> str:
    """Start a run on a file store with no worker; it stays pending, its row written."""
    pyworkflow.configure(storage=f"file://{store}", embedded_worker=False)
    run_id = start(double_after_nap, 5)
    pyworkflow.shutdown()
    return run_id


@pytest.mark.parametrize("damage", ["missing", "truncated", "empty"])
def test_file_row_damaged_is_rebuilt_from_the_log_and_resumed(
    tmp_path: Path, logs: list[str], damage: str
) -> None:
    store = tmp_path / "store"
    run_id = _suspend_one(store)
    row = store / "runs" / f"{run_id}.json"
    if damage == "missing":
        row.unlink()
    elif damage == "truncated":
        row.write_text(row.read_text()[:25])
    else:
        row.write_text("")
    pyworkflow.configure(storage=f"file://{store}", embedded_worker=False)
    listed = pyworkflow.list_runs().runs
    assert [r.run_id for r in listed] == [run_id]
    assert listed[0].workflow_name == "double_after_nap"
    assert listed[0].status == RunStatus.PENDING
    assert any(run_id in m and "rebuilt it from the event log" in m for m in logs)
    pyworkflow.shutdown()
    pyworkflow.configure(storage=f"file://{store}", embedded_worker=True, **FAST)
    assert get_result(run_id, timeout=30) == 20
    assert json.loads(row.read_text())[0] == run_id  # written again


def test_file_row_of_a_finished_run_is_rebuilt_with_its_outcome(tmp_path: Path) -> None:
    store = tmp_path / "store"
    pyworkflow.configure(storage=f"file://{store}", **FAST)
    run_id = start(double_after_nap, 1)
    assert get_result(run_id, timeout=30) == 4
    before = get_run(run_id)
    pyworkflow.shutdown()
    (store / "runs" / f"{run_id}.json").unlink()
    pyworkflow.configure(storage=f"file://{store}", embedded_worker=False)
    after = get_run(run_id)
    assert after.status == RunStatus.COMPLETED and get_result(run_id) == 4
    assert after.created_at == before.created_at
    assert after.completed_at is not None


@pytest.mark.anyio
async def test_file_row_that_cannot_be_rebuilt_is_listed_failed_and_logged(
    tmp_path: Path, logs: list[str]
) -> None:
    """A log from before the log recorded the created row: listed, logged, never dropped."""
    store = tmp_path / "store"
    storage = FileStorage(f"file://{store}")
    await storage.open()
    log = store / "runs" / "old-run.jsonl"
    log.write_text(
        json.dumps(["workflow_started", None, 1700000000.0, {"workflow": "legacy"}]) + "\n"
    )
    page = await storage.list_runs()
    assert [(r.run_id, r.workflow_name, r.status) for r in page.runs] == [
        ("old-run", "legacy", RunStatus.FAILED)
    ]
    assert "CorruptDataError" in (page.runs[0].error_message or "")
    assert str(log) in (page.runs[0].error_message or "")
    with pytest.raises(CorruptDataError, match=r"old-run.*cannot be rebuilt"):
        await storage.get_run("old-run")
    await storage.list_runs()
    assert sum("cannot be read or rebuilt" in m for m in logs) == 1  # once per process
    assert await storage.claim_runs("w", pyworkflow.now(), 10, timedelta(seconds=5)) == []
    await storage.close()


@pytest.mark.parametrize(
    "run_id", ["r" * 300, "é" * 150, "a\0b", "../escape", ".hidden"], ids=repr
)
@pytest.mark.anyio
async def test_a_run_id_that_cannot_name_a_file_is_not_found_on_file_storage(
    tmp_path: Path, run_id: str
) -> None:
    """A client's lookup of an odd run id is "not found", never an OSError (a 500 at the API)."""
    from pyworkflow.errors import RunNotFoundError

    async with FileStorage(f"file://{tmp_path / 'runs'}") as storage:
        with pytest.raises(RunNotFoundError):
            await storage.get_run(run_id)
        with pytest.raises(RunNotFoundError):
            await storage.get_events(run_id)
