"""Passwords and unreachable servers: clear errors that never show the password.

A real MariaDB with a password account (``app``): a wrong password is a
ConfigError naming the server, a stopped server makes one-shot commands give
up after ``command_timeout`` and say what they tried, and neither the errors
nor the logs (DEBUG included) ever carry the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from loguru import logger
from mysql_support import start_mariadb
from pyworkflow_mysql import MySQLSettings, MySQLStorage
from pyworkflow_mysql.migrations import LATEST, MIGRATIONS
from typer.testing import CliRunner

from pyworkflow.cli.app import app
from pyworkflow.errors import ConfigError, StorageUnavailableError
from pyworkflow.storage.base import set_command_mode
from pyworkflow.testing.servers import MariaDBServer

PASSWORD = "my-secret-do-not-print-53"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def password_server() -> Iterator[MariaDBServer]:
    """A real MariaDB whose ``app`` account needs :data:`PASSWORD`."""
    server = start_mariadb(password=PASSWORD)
    yield server
    server.destroy()


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every log line PyWorkflow emits during the test, DEBUG included."""
    lines: list[str] = []
    handler = logger.add(
        lambda m: lines.append(f"{m} {m.record['extra']}"), level="DEBUG", format="{message}"
    )
    logger.enable("pyworkflow_mysql")
    yield lines
    logger.remove(handler)
    logger.disable("pyworkflow_mysql")


def _url(server: MariaDBServer, password: str = PASSWORD) -> str:
    return (
        f"mysql://app:{quote(password, safe='')}@127.0.0.1:{server.port}/db_{uuid.uuid4().hex[:8]}"
    )


def _cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyworkflow", *args],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.anyio
async def test_the_password_account_works_and_logs_do_not_show_it(
    password_server: MariaDBServer, logs: list[str]
) -> None:
    async with MySQLStorage(_url(password_server)) as store:
        assert store.server is not None and store.server.supported
        assert (await store.list_runs()).runs == []
    assert any("created database" in line and "***" in line for line in logs)  # captured
    assert not any(PASSWORD in line for line in logs)


@pytest.mark.anyio
async def test_a_wrong_password_is_a_config_error_without_the_password(
    password_server: MariaDBServer, logs: list[str]
) -> None:
    wrong = "wrong-secret-also-hidden-8"
    with pytest.raises(ConfigError) as info:
        await MySQLStorage(_url(password_server, wrong)).open()
    message = str(info.value)
    assert "Access denied for user 'app'" in message and "***" in message
    assert wrong not in message and PASSWORD not in message
    assert not any(wrong in line for line in logs)


def test_storage_status_and_migrate_commands(password_server: MariaDBServer) -> None:
    url = _url(password_server)
    runner = CliRunner()
    status = runner.invoke(app, ["--storage", url, "storage", "status", "--json"])
    assert status.exit_code == 1, status.output  # pending: a deploy can check first
    assert json.loads(status.output)["version"] == 0
    done = runner.invoke(app, ["--storage", url, "storage", "migrate"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[:-1] == [f"applied {m.version}: {m.description}" for m in MIGRATIONS]
    assert lines[-1].endswith(f"schema version {LATEST} (applied {len(MIGRATIONS)})")
    status = runner.invoke(app, ["--storage", url, "storage", "status"])
    assert status.exit_code == 0 and status.output.splitlines()[-1] == "up to date"
    assert PASSWORD not in done.output + status.output


@pytest.fixture(scope="module")
def stopped_server() -> Iterator[MariaDBServer]:
    """A password server, stopped: its port no longer answers."""
    server = start_mariadb(password=PASSWORD)
    server.stop()
    yield server
    server.destroy()


def _check_message(text: str, server: MariaDBServer, seconds: str) -> None:
    assert "unreachable" in text and f"for {seconds}s" in text, text
    assert f"host 127.0.0.1, port {server.port}" in text and "user app" in text
    assert "tried " in text and "mariadb-admin ping" in text
    assert PASSWORD not in text and "***" in text


def test_runs_list_gives_up_after_command_timeout_and_says_what_it_tried(
    stopped_server: MariaDBServer, tmp_path: Path
) -> None:
    done = _cli(
        tmp_path,
        "--storage",
        _url(stopped_server),
        "runs",
        "list",
        PYWORKFLOW_MYSQL__COMMAND_TIMEOUT="0.5",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    _check_message(done.stderr, stopped_server, "0.5")
    assert "command_timeout" in done.stderr


@pytest.mark.anyio
async def test_in_command_mode_the_storage_uses_command_timeout(
    stopped_server: MariaDBServer, logs: list[str]
) -> None:
    settings = MySQLSettings(command_timeout=0.3, reconnect_timeout=3600)
    set_command_mode(True)  # what the CLI does; the autouse fixture turns it off again
    with pytest.raises(StorageUnavailableError) as info:
        await MySQLStorage(_url(stopped_server), settings).open()
    _check_message(str(info.value), stopped_server, "0.3")
    assert not any(PASSWORD in line for line in logs)
