"""``pyworkflow storage`` on backends without a versioned schema (PostgreSQL: its plugin)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pyworkflow.cli.app import app
from pyworkflow.storage.migration import MigratingStorage
from pyworkflow.storage.sqlite import SQLiteStorage


def test_a_backend_without_migrations_says_so_and_succeeds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pw.db'}"
    for command in ("status", "migrate"):
        result = CliRunner().invoke(app, ["--storage", url, "storage", command])
        assert result.exit_code == 0, result.output
        assert "no versioned schema" in result.output and "nothing to migrate" in result.output
        as_json = CliRunner().invoke(app, ["--storage", url, "storage", command, "--json"])
        assert json.loads(as_json.output) == {"storage": url, "migrations": False}
    assert not (tmp_path / "pw.db").exists()  # nothing was opened or created
    assert not isinstance(SQLiteStorage(url), MigratingStorage)


def test_the_storage_password_is_never_printed() -> None:
    url = "redis://:hunter2-secret@127.0.0.1:1/0"
    result = CliRunner().invoke(app, ["--storage", url, "storage", "status", "--json"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    assert json.loads(result.output)["storage"] == "redis://:***@127.0.0.1:1/0"
