"""Secrets never in output: the redaction rule, then logs, errors and the CLI on real servers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from loguru import logger

from pyworkflow.config import load_settings
from pyworkflow.errors import ConfigError
from pyworkflow.logs import disable_logging, enable_logging
from pyworkflow.plugin_options import option_text, parse_plugin_table
from pyworkflow.plugins import create_storage
from pyworkflow.redaction import (
    MASK,
    is_secret_key,
    redact_settings,
    redact_text,
    redact_url,
    redacted_repr,
    url_password,
)
from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import PostgresServer, RedisServer, free_port

#: Every secret below contains this, so one scan finds any of them.
MARK = "S3cret"
REDIS_PW = f"r3dis-{MARK}-pw"
PG_PW = f"pg-{MARK}-pw"
API_TOKEN = f"tok-{MARK}-api-0123456789"
BROKER_PW = f"brk-{MARK}-pw"


# ----- the rule -----


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:r3dispass@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://app:pw@host/db", "postgresql://app:***@host/db"),
        (
            "postgresql+asyncpg://app:pw@host:5432/db?schema=s",
            "postgresql+asyncpg://app:***@host:5432/db?schema=s",
        ),
        ("rediss://user:p%2Fw@h:6380/2?prefix=x", "rediss://user:***@h:6380/2?prefix=x"),
        ("amqp://guest:guest@rabbit//", "amqp://guest:***@rabbit//"),
        # unencoded / ? # @ in the password: SQLAlchemy accepts them, so hide them whole
        ("postgresql://app:pa/ss@host/db", "postgresql://app:***@host/db"),
        ("redis://:pa?ss@host/0?prefix=a", "redis://:***@host/0?prefix=a"),
        ("redis://:p@ss@host/0?note=a@b", "redis://:***@host/0?note=a@b"),
        ("postgresql://app:1234@h/db", "postgresql://app:***@h/db"),
        # secret query parameters and fragments
        ("https://h/x?token=abc&page=2", "https://h/x?token=***&page=2"),
        ("postgresql://h/db?user=app&password=pw", "postgresql://h/db?user=app&password=***"),
        ("https://h/cb#access_token=zz&state=1", "https://h/cb#access_token=***&state=1"),
        ("redis://h/0?ssl_keyfile=/k.pem", "redis://h/0?ssl_keyfile=/k.pem"),
        # nothing to hide: unchanged
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
        ("https://example.com:8080/users/@me", "https://example.com:8080/users/@me"),
        ("https://example.com:8080/a?mail=x@y", "https://example.com:8080/a?mail=x@y"),
        ("sqlite:///.pyworkflow/pyworkflow.db", "sqlite:///.pyworkflow/pyworkflow.db"),
        ("file:///tmp/a@b/runs", "file:///tmp/a@b/runs"),
        ("memory://", "memory://"),
        ("redis://:@host/0", "redis://:@host/0"),
        # not a URL: a bare user:password@host still loses its password
        ("app:pw@host:5432", "app:***@host:5432"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("special", ["", "/", "?", "#", "@", ":", "%2F", "%40", " ", "//@?#"])
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{pw}@127.0.0.1:6379/0",
        "redis://default:{pw}@127.0.0.1:6379/0?prefix=app",
        "postgresql://app:{pw}@db.internal:5432/app?schema=s",
        "amqp://guest:{pw}@rabbit:5672//",
        "{pw}",
    ],
)
def test_no_piece_of_a_password_survives(template: str, special: str) -> None:
    password = f"Xa{special}Zb"
    url = template.format(pw=password)
    if template == "{pw}":
        url = f"https://app:{password}@host/x?token={quote(password)}"
    shown = [redact_url(url), redact_text(f"cannot connect to {url!r}: {{'url': {url!r}}}")]
    if " " not in url:  # unquoted in free text, a URL ends at whitespace
        shown.append(redact_text(f"cannot connect to {url} (timeout)"))
    for text in shown:
        assert "Xa" not in text and "Zb" not in text, text
    assert MASK in redact_url(url)


def test_the_user_part_and_the_rest_stay() -> None:
    shown = redact_url("postgresql://app:pw@db.internal:5433/prod?schema=jobs&sslmode=require")
    assert shown == "postgresql://app:***@db.internal:5433/prod?schema=jobs&sslmode=require"


def test_url_password_reads_what_redact_url_hides() -> None:
    assert url_password("redis://:pw@h/0") == "pw"
    assert url_password("postgresql://app:pa/ss@h/db") == "pa/ss"
    assert url_password("redis://h:6379/0") is None
    assert url_password("redis://user@h/0") is None


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "sslpassword",
        "PASSWORD",
        "db_passwd",
        "pwd",
        "passphrase",
        "api_token",
        "token",
        "client_secret",
        "secret",
        "hmac_secret",
        "credentials",
        "aws_credential",
        "apikey",
        "api_key",
        "API_KEY",
        "signing_key",
        "signing_keys",
        "signingKeys",
        "private-key",
        "key",
        "server.api_token",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    [
        "storage",
        "broker_url",
        "result_backend",
        "keepalive",
        "socket_keepalive",
        "ssl_keyfile",
        "monkey",
        "prefix",
        "user",
        "username",
        "public_url",
        "run_id",
        "max_payload_bytes",
    ],
)
def test_not_secret_names(name: str) -> None:
    assert not is_secret_key(name)


def test_redact_text_scrubs_urls_assignments_and_items() -> None:
    text = (
        "error: cannot reach 'redis://:rpw@127.0.0.1:6379/0' (dsn host=db password=dpw user=bob) "
        '{\'api_token\': \'atok\', \'port\': 1} {"client_secret": "c\\"zsv", "n": 2} '
        "CelerySettings(signing_key='skey', broker_url='amqp://u:bpw@rabbit//') token=ttok"
    )
    shown = redact_text(text)
    for secret in ("rpw", "dpw", "atok", "zsv", "skey", "bpw", "ttok"):
        assert secret not in shown, (secret, shown)
    for kept in ("127.0.0.1:6379", "host=db", "user=bob", "'port': 1", '"n": 2', "amqp://u:"):
        assert kept in shown, (kept, shown)


def test_redact_text_leaves_plain_messages_alone() -> None:
    text = "run 0af3 step_id='s1' failed after 3 attempts: ValueError('bad input: 12')"
    assert redact_text(text) == text


def test_redact_settings_nested() -> None:
    settings: dict[str, Any] = {
        "storage": "redis://:rpw@h/0",
        "server": {"api_token": "atok", "max_body_bytes": 1024, "signing_keys": ["k1", "k2"]},
        "celery": {
            "broker_url": "redis://:bpw@h/1",
            "result_backend": None,
            "modules": ("a", "b"),
            "transport": [{"password": "tpw", "host": "h"}],
        },
        "api_key": None,
        "secret": "",
        "lease_seconds": 30.0,
    }
    shown = redact_settings(settings)
    assert shown == {
        "storage": "redis://:***@h/0",
        "server": {"api_token": MASK, "max_body_bytes": 1024, "signing_keys": MASK},
        "celery": {
            "broker_url": "redis://:***@h/1",
            "result_backend": None,
            "modules": ("a", "b"),
            "transport": [{"password": MASK, "host": "h"}],
        },
        "api_key": None,
        "secret": "",
        "lease_seconds": 30.0,
    }
    assert settings["server"]["api_token"] == "atok"  # the input is not touched


def test_redacted_repr() -> None:
    assert redacted_repr("api_token", "atok") == MASK
    assert redacted_repr("storage", ["redis://:rpw@h/0"]) == "['redis://:***@h/0']"


# ----- errors -----


def test_config_type_error_hides_a_url_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"storage": [f"redis://:{REDIS_PW}@h/0"]})
    assert MARK not in str(info.value)
    assert "redis://:***@h/0" in str(info.value)


def test_plugin_option_error_hides_secret_values() -> None:
    settings = load_settings(
        {
            "server": {"api_token": [API_TOKEN]},
            "celery": {"broker_url": [f"redis://:{BROKER_PW}@h"]},
        }
    )
    with pytest.raises(ConfigError) as info:
        parse_plugin_table(settings, "server", {"api_token": option_text})
    assert MARK not in str(info.value) and "api_token" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_plugin_table(settings, "celery", {"broker_url": option_text})
    assert MARK not in str(info.value) and "redis://:***@h" in str(info.value)


def test_unknown_storage_scheme_error_hides_the_password() -> None:
    url = f"nosuch://app:{PG_PW}@host/db"
    with pytest.raises(ConfigError) as info:
        create_storage(url, load_settings({"storage": url}))
    assert MARK not in str(info.value)
    assert "nosuch://app:***@host/db" in str(info.value)


def test_redis_url_errors_hide_the_password() -> None:
    pytest.importorskip("pyworkflow_redis")
    from pyworkflow_redis.settings import parse_storage_url

    for url in (
        f"redis://:{REDIS_PW}@h/notanumber",
        f"redis://:{REDIS_PW}@h/0?nosuch=1",
        f"redis://:{REDIS_PW}@h:0/0",
        f"redis://:ab/{REDIS_PW}@h/0",  # an unencoded / would put part of it in the path
        f"redis://:{REDIS_PW}:x@h:notaport/0",
    ):
        with pytest.raises(ConfigError) as info:
            parse_storage_url(url)
        assert MARK not in str(info.value), str(info.value)
    with pytest.raises(ConfigError, match="percent-encode"):
        parse_storage_url(f"redis://:ab/{REDIS_PW}@h/0")


def test_postgres_url_errors_hide_the_password() -> None:
    pytest.importorskip("pyworkflow_postgres")
    from pyworkflow_postgres.settings import PostgresSettings, parse_url
    from pyworkflow_postgres.storage import PostgresStorage

    for url in (
        f"postgresql+psycopg2://app:{PG_PW}@h/db",
        f"postgresql://app:{PG_PW}@h",
        f"postgresql://app:{PG_PW}@h/db?schema=bad-name!",
    ):
        with pytest.raises(ConfigError) as info:
            parse_url(url, PostgresSettings())
        assert MARK not in str(info.value), str(info.value)
    storage = PostgresStorage(f"postgresql://app:{PG_PW}@h/db")
    assert storage.log_url == "postgresql://app:***@h/db"


# ----- logs -----


@pytest.fixture
def log_sink() -> Iterator[io.StringIO]:
    disable_logging()
    yield io.StringIO()
    disable_logging()


@pytest.mark.parametrize("as_json", [False, True])
def test_logs_hide_secrets_in_messages_fields_and_tracebacks(
    log_sink: io.StringIO, as_json: bool
) -> None:
    enable_logging("DEBUG", json=as_json, sink=log_sink)
    url = f"redis://:{REDIS_PW}@127.0.0.1:6379/0"
    log = logger.bind(storage=url, api_token=API_TOKEN, run_id="r1")
    log.info("connecting to {}", url)
    log.info("dsn host=db password={}", PG_PW)
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        log.exception("storage failed")
    out = log_sink.getvalue()
    assert "connecting to redis://:***@127.0.0.1:6379/0" in out
    assert "storage failed" in out and "ConnectionError" in out
    assert MARK not in out, out
    if as_json:
        records = [json.loads(line)["record"] for line in out.splitlines()]
        assert records[0]["extra"] == {
            "storage": "redis://:***@127.0.0.1:6379/0",
            "api_token": MASK,
            "run_id": "r1",
        }


# ----- the CLI against real servers with passwords -----


def _cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
    base["COLUMNS"] = "500"  # no line wrap could split a secret and hide it from the scan
    return subprocess.run(
        [sys.executable, "-m", "pyworkflow", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_no_secret(out: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in (MARK, *secrets):
        assert secret not in out.stdout, (out.args, out.stdout)
        assert secret not in out.stderr, (out.args, out.stderr)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose pyproject holds an API token and a Celery broker URL with a password."""
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [tool.pyworkflow.server]
            api_token = "{API_TOKEN}"

            [tool.pyworkflow.celery]
            broker_url = "redis://:{BROKER_PW}@127.0.0.1:6379/1"
            result_backend = "redis://:{BROKER_PW}@127.0.0.1:6379/2"
            """
        )
    )
    return tmp_path


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A durable redis-server that wants a password."""
    directory = tmp_path_factory.mktemp("redis-auth")
    server = require_server(lambda: RedisServer(directory, aof=True, password=REDIS_PW))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL whose user ``app`` logs in with a password over TCP."""
    server = require_server(lambda: PostgresServer(fsync=False, user="app", password=PG_PW))
    yield server
    server.destroy()


COMMANDS = [
    ("config",),
    ("config", "--json"),
    ("plugins",),
    ("plugins", "--json"),
    ("--log-level", "DEBUG", "--json-logs", "runs", "list"),
    ("--log-level", "DEBUG", "runs", "list", "--json"),
]


def _check_commands(project: Path, url: str, shown: str) -> None:
    """Every command succeeds on ``url`` and shows it as ``shown``, never a secret."""
    for command in COMMANDS:
        out = _cli(project, "--storage", url, *command)
        assert out.returncode == 0, (command, out.stdout, out.stderr)
        _assert_no_secret(out, REDIS_PW, PG_PW, API_TOKEN, BROKER_PW)
    config = json.loads(_cli(project, "--storage", url, "config", "--json").stdout)
    assert config["storage"]["value"] == shown
    assert config["server.api_token"]["value"] == MASK
    assert config["celery.broker_url"]["value"] == "redis://:***@127.0.0.1:6379/1"
    assert config["celery.result_backend"]["value"] == "redis://:***@127.0.0.1:6379/2"
    table = _cli(project, "--storage", url, "config").stdout
    assert shown in table and "server.api_token" in table
    logged = _cli(project, "--storage", url, "--log-level", "DEBUG", "--json-logs", "runs", "list")
    records = [json.loads(line)["record"] for line in logged.stderr.splitlines()]
    started = [r for r in records if r["message"] == "pyworkflow runtime started"]
    assert started and started[0]["extra"]["storage"] == shown  # logged, without the password


@pytest.mark.redis
@pytest.mark.slow
def test_cli_never_prints_the_redis_password(project: Path, redis_server: RedisServer) -> None:
    url = f"{redis_server.url}?prefix=redact"
    assert REDIS_PW in url
    _check_commands(project, url, f"redis://:***@127.0.0.1:{redis_server.port}/0?prefix=redact")


@pytest.mark.postgres
@pytest.mark.slow
def test_cli_never_prints_the_postgres_password(
    project: Path, postgres_server: PostgresServer
) -> None:
    url = f"{postgres_server.url}?schema=redact"
    assert PG_PW in url
    shown = f"postgresql://app:***@127.0.0.1:{postgres_server.port}/postgres?schema=redact"
    _check_commands(project, url, shown)


def _check_failure(
    project: Path, url: str, *secrets: str, env: dict[str, str] | None = None
) -> str:
    out = _cli(project, "--storage", url, "--log-level", "DEBUG", "runs", "list", env=env)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "error:" in out.stderr
    _assert_no_secret(out, *secrets)
    return out.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_redis_wrong_password_and_unreachable_server_errors(
    project: Path, redis_server: RedisServer
) -> None:
    wrong = f"wrong-{MARK}-pw"
    url = f"redis://:{wrong}@127.0.0.1:{redis_server.port}/0?reconnect_timeout=0.5"
    err = _check_failure(project, url, wrong)
    assert f"redis://:***@127.0.0.1:{redis_server.port}/0" in err
    gone = f"redis://:{REDIS_PW}@127.0.0.1:{free_port()}/0?reconnect_timeout=0.5"
    assert "unreachable" in _check_failure(project, gone, REDIS_PW)


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_wrong_password_and_unreachable_server_errors(
    project: Path, postgres_server: PostgresServer
) -> None:
    fast = {"PYWORKFLOW_POSTGRES__RECONNECT_TIMEOUT": "0.5"}
    wrong = f"wrong-{MARK}-pw"
    url = f"postgresql://app:{wrong}@127.0.0.1:{postgres_server.port}/postgres"
    assert "password authentication failed" in _check_failure(project, url, wrong, env=fast)
    gone = f"postgresql://app:{PG_PW}@127.0.0.1:{free_port()}/postgres"
    err = _check_failure(project, gone, PG_PW, env=fast)
    assert "unreachable" in err and "postgresql://app:***@" in err
