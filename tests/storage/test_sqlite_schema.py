"""SQLite storage's plain DDL and the SQLModel tables of ``storage/schema.py`` cannot drift.

SQLiteStorage creates its schema with stdlib ``sqlite3`` (no SQLAlchemy at run
time); PostgreSQL builds its tables from the SQLModel metadata. These tests
create one database each way and compare what SQLite reports, table by table,
column by column, index by index.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from pyworkflow.storage import schema
from pyworkflow.storage.sqlite import SCHEMA, SCHEMA_OBJECTS, SQLiteStorage

ROWS = (
    schema.RunRow,
    schema.EventRow,
    schema.HookRow,
    schema.StepLeaseRow,
    schema.ScheduleRow,
    schema.StepSlotRow,
    schema.StreamChunkRow,
    schema.StepCheckpointRow,
)
TABLES = tuple(str(row.__tablename__) for row in ROWS)


def _describe(path: Path) -> dict[str, Any]:
    """Every table's columns, keys and indexes as SQLite reports them (PRAGMAs)."""
    conn = sqlite3.connect(path)
    try:
        described: dict[str, Any] = {}
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in sorted(names):
            # cid, name, type, notnull, default, pk (position in the primary key)
            columns = conn.execute(f"PRAGMA table_xinfo({table})").fetchall()
            indexes = {}
            # seq, name, unique, origin (c: CREATE INDEX, u: UNIQUE, pk), partial
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                cols = [r[2] for r in conn.execute(f"PRAGMA index_xinfo({name})") if r[5]]
                indexes[name] = (unique, origin, partial, cols)
            described[table] = {"columns": columns, "indexes": indexes}
        return described
    finally:
        conn.close()


def _from_metadata(path: Path) -> None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        tables = [SQLModel.metadata.tables[name] for name in TABLES]
        SQLModel.metadata.create_all(engine, tables=tables)
    finally:
        engine.dispose()


def _from_ddl(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_ddl_and_sqlmodel_metadata_create_the_same_schema(tmp_path: Path) -> None:
    _from_metadata(tmp_path / "metadata.db")
    _from_ddl(tmp_path / "ddl.db")
    from_metadata = _describe(tmp_path / "metadata.db")
    from_ddl = _describe(tmp_path / "ddl.db")
    assert sorted(from_ddl) == sorted(TABLES)
    for table in TABLES:
        assert from_ddl[table]["columns"] == from_metadata[table]["columns"], table
        assert from_ddl[table]["indexes"] == from_metadata[table]["indexes"], table


@pytest.mark.parametrize("row", ROWS, ids=TABLES)
def test_ddl_columns_match_the_sqlmodel_columns(tmp_path: Path, row: Any) -> None:
    """Name, order, type, nullability and primary key of each column, against the metadata."""
    _from_ddl(tmp_path / "ddl.db")
    table = SQLModel.metadata.tables[str(row.__tablename__)]
    conn = sqlite3.connect(tmp_path / "ddl.db")
    try:
        info = conn.execute(f"PRAGMA table_info({table.name})").fetchall()
    finally:
        conn.close()
    expected = [
        (
            column.name,
            column.type.compile(dialect=create_engine("sqlite://").dialect),
            int(not column.nullable),
            column.primary_key,
        )
        for column in table.columns
    ]
    assert [(name, type_, notnull, pk > 0) for _, name, type_, notnull, _, pk in info] == expected
    index_names = {index.name for index in table.indexes}
    assert index_names <= SCHEMA_OBJECTS


def test_schema_objects_name_every_table_and_index() -> None:
    tables = [SQLModel.metadata.tables[name] for name in TABLES]
    expected = {t.name for t in tables} | {str(i.name) for t in tables for i in t.indexes}
    assert expected == SCHEMA_OBJECTS


@pytest.mark.anyio
async def test_storage_opens_a_file_made_by_sqlmodel_and_keeps_its_schema(tmp_path: Path) -> None:
    """A database created by an earlier version (SQLModel's create_all) is used as it is."""
    path = tmp_path / "old.db"
    _from_metadata(path)
    before = _describe(path)
    storage = SQLiteStorage(f"sqlite:///{path}")
    await storage.open()
    await storage.close()
    assert _describe(path) == before


@pytest.mark.anyio
async def test_storage_creates_the_metadata_schema(tmp_path: Path) -> None:
    _from_metadata(tmp_path / "metadata.db")
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'new.db'}")
    await storage.open()
    await storage.close()
    assert _describe(tmp_path / "new.db") == _describe(tmp_path / "metadata.db")
