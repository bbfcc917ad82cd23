"""``pyworkflow storage status`` and ``storage migrate`` against a real PostgreSQL schema."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from pyworkflow_postgres.migrations import LATEST, MIGRATIONS
from rich.console import Console
from typer.testing import CliRunner

from pyworkflow.cli import render
from pyworkflow.cli.app import app
from pyworkflow.testing.servers import PostgresServer


def storage_cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--storage", url, "storage", *args])
    return result.exit_code, result.output


def test_status_and_migrate_walk_a_new_schema_up_to_the_latest(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYWORKFLOW_POSTGRES__MIGRATE", "false")  # workers would refuse it
    url = f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:12]}"
    code, out = storage_cli(url, "status", "--json")
    assert code == 1, out  # pending: a deploy can check first
    status = json.loads(out)
    assert status["version"] == 0 and status["latest"] == LATEST
    assert [p["version"] for p in status["pending"]] == [m.version for m in MIGRATIONS]

    code, out = storage_cli(url, "migrate")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:-1] == [f"applied {m.version}: {m.description}" for m in MIGRATIONS]
    assert lines[-1].endswith(f"schema version {LATEST} (applied {len(MIGRATIONS)})")

    code, out = storage_cli(url, "status")
    assert code == 0 and out.splitlines()[-1] == "up to date", out
    code, out = storage_cli(url, "migrate", "--json")
    assert code == 0 and json.loads(out)["applied"] == [] and json.loads(out)["version"] == LATEST


def test_migrate_on_a_terminal_shows_a_progress_bar_from_where_the_schema_is(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio
    import asyncpg  # the schema is taken back to version 2 by hand

    url = f"{postgres_server.url}?schema=t_{uuid.uuid4().hex[:12]}"
    code, out = storage_cli(url, "migrate", "--json")
    assert code == 0 and json.loads(out)["version"] == LATEST

    async def back_to_two() -> None:
        schema = url.rsplit("schema=", 1)[1]
        conn = await asyncpg.connect(postgres_server.url, server_settings={"search_path": schema})
        try:
            await conn.execute("DELETE FROM pyworkflow_schema_version WHERE version > 2")
            for table in ("pyworkflow_step_checkpoints", "pyworkflow_stream_chunks"):
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute("DROP TABLE IF EXISTS pyworkflow_step_slots")
        finally:
            await conn.close()

    anyio.run(back_to_two)
    code, out = storage_cli(url, "status", "--json")
    assert code == 1 and json.loads(out)["version"] == 2, out
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Console(record=True, width=120, force_terminal=True, file=io.StringIO())
    monkeypatch.setattr(render, "console", terminal)
    code, out = storage_cli(url, "migrate")
    assert code == 0, out
    text = terminal.export_text()
    done = len(MIGRATIONS) - 2
    assert re.search(rf"{LATEST}: {re.escape(MIGRATIONS[-1].description)}.*{done}/{done}", text)
    code, out = storage_cli(url, "status")
    assert code == 0, out
