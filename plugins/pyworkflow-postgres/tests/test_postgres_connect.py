"""An unreachable PostgreSQL: commands give up in seconds and say what they tried.

Issue 12, finding 5: ``pyworkflow runs list`` against a stopped server hung
for over 60 s (the worker's ``reconnect_timeout``). One-shot CLI commands now
use ``command_timeout`` (5 s by default, configurable) and name the server,
the attempts and the option to raise, with the password hidden. Workers keep
``reconnect_timeout``. Real PostgreSQL servers, stopped for the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyworkflow_postgres import PostgresStorage
from pyworkflow_postgres.settings import PostgresSettings

from pyworkflow import plugins
from pyworkflow.config import load_settings
from pyworkflow.errors import StorageUnavailableError
from pyworkflow.storage.base import set_command_mode
from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import PostgresServer

PASSWORD = "pg-secret-do-not-print-91"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stopped_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL with a password user, stopped: its port no longer answers."""
    server = require_server(lambda: PostgresServer(fsync=False, user="app", password=PASSWORD))
    server.stop()
    yield server
    server.destroy()


def _cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyworkflow", *args],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


def _check_message(text: str, server: PostgresServer, seconds: str) -> None:
    assert "unreachable" in text and f"for {seconds}s" in text
    assert f"host 127.0.0.1, port {server.port}" in text and "user app" in text
    assert "tried " in text and "command_timeout" in text and "pg_isready" in text
    assert PASSWORD not in text and "***" in text


@pytest.mark.parametrize(
    ("env", "seconds"), [({}, "5"), ({"PYWORKFLOW_POSTGRES__COMMAND_TIMEOUT": "0.5"}, "0.5")]
)
def test_runs_list_gives_up_after_command_timeout_and_says_what_it_tried(
    stopped_server: PostgresServer, tmp_path: Path, env: dict[str, str], seconds: str
) -> None:
    done = _cli(tmp_path, "--storage", stopped_server.url, "runs", "list", **env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    _check_message(done.stderr, stopped_server, seconds)


def test_command_timeout_comes_from_the_postgres_table(tmp_path: Path) -> None:
    settings = load_settings({"postgres": {"command_timeout": 2}})
    assert PostgresSettings.from_settings(settings).command_timeout == 2.0
    assert PostgresSettings().command_timeout == 5.0
    storage = plugins.create_storage("postgresql://u:p@127.0.0.1:1/db", settings)
    assert isinstance(storage, PostgresStorage)


@pytest.mark.anyio
async def test_in_command_mode_the_storage_uses_command_timeout(
    stopped_server: PostgresServer,
) -> None:
    settings = PostgresSettings(command_timeout=0.3, reconnect_timeout=3600)
    set_command_mode(True)  # what the CLI does; the autouse fixture turns it off again
    with pytest.raises(StorageUnavailableError) as info:
        await PostgresStorage(stopped_server.url, settings).open()
    _check_message(str(info.value), stopped_server, "0.3")


@pytest.mark.anyio
async def test_outside_command_mode_reconnect_timeout_still_applies(
    stopped_server: PostgresServer,
) -> None:
    settings = PostgresSettings(command_timeout=3600, reconnect_timeout=0.3)
    with pytest.raises(StorageUnavailableError) as info:
        await PostgresStorage(stopped_server.url, settings).open()
    message = str(info.value)
    assert "for 0.3s" in message and "reconnect_timeout" in message
    assert PASSWORD not in message
