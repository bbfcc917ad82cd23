"""Refused credentials fail at once with a clear message, never retried (issue 12, finding 5).

A wrong Redis password used to be retried for ``reconnect_timeout`` seconds as
"unreachable". These tests run against a real password-protected redis-server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from loguru import logger
from pyworkflow_redis.storage import RedisStorage

import pyworkflow
from pyworkflow.errors import ConfigError
from pyworkflow.testing.fixtures import require_server
from pyworkflow.testing.servers import RedisServer

PASSWORD = "right-horse-battery-staple-42"
WRONG = "wrong-password-never-shown-7"

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A durable redis-server that wants a password."""
    directory = tmp_path_factory.mktemp("redis-locked")
    server = require_server(lambda: RedisServer(directory, aof=True, password=PASSWORD))
    yield server
    server.stop()


@pytest.fixture
def retries() -> Iterator[list[str]]:
    """Warnings the storage logs while it retries an unreachable server."""
    messages: list[str] = []
    handler = logger.add(
        lambda m: messages.append(m.record["message"]),
        level="WARNING",
        filter=lambda record: "retrying" in record["message"],
    )
    logger.enable("pyworkflow_redis")
    yield messages
    logger.remove(handler)
    logger.disable("pyworkflow_redis")


def _url(server: RedisServer, userinfo: str, **query: str) -> str:
    params = "&".join(
        f"{k}={v}" for k, v in {"prefix": f"t{uuid.uuid4().hex[:12]}", **query}.items()
    )
    return f"redis://{userinfo}127.0.0.1:{server.port}/0?reconnect_timeout=3&{params}"


@pytest.mark.parametrize("userinfo", [f":{WRONG}@", "", f"default:{WRONG}@"])
async def test_refused_password_is_a_config_error_at_once(
    locked_redis: RedisServer, retries: list[str], userinfo: str
) -> None:
    storage = RedisStorage(_url(locked_redis, userinfo))
    with pytest.raises(ConfigError) as info:
        await storage.open()
    message = str(info.value)
    assert "refused to authenticate" in message and "password" in message
    assert f"127.0.0.1:{locked_redis.port}" in message and "config key 'storage'" in message
    assert WRONG not in message
    assert retries == []  # not once treated as "unreachable"


async def test_the_right_password_still_works(locked_redis: RedisServer) -> None:
    storage = RedisStorage(_url(locked_redis, f":{quote(PASSWORD)}@"))
    await storage.open()
    try:
        assert (await storage.list_runs()).runs == []
    finally:
        await storage.close()


async def test_a_user_without_permission_is_told_what_it_lacks(
    locked_redis: RedisServer, retries: list[str]
) -> None:
    admin = locked_redis.client()
    try:
        admin.execute_command(
            "ACL", "SETUSER", "narrow", "on", ">narrow-pw-123", "~other:*", "+ping"
        )
    finally:
        admin.close()
    storage = RedisStorage(_url(locked_redis, "narrow:narrow-pw-123@", durability="relaxed"))
    with pytest.raises(ConfigError) as info:
        await storage.open()
    message = str(info.value)
    assert "denied a command or key PyWorkflow needs" in message
    assert storage.prefix in message and "narrow-pw-123" not in message
    assert retries == []


def test_the_api_fails_at_once_with_the_password_hidden(
    locked_redis: RedisServer, retries: list[str], tmp_path: Path
) -> None:
    pyworkflow.configure(storage=_url(locked_redis, f":{WRONG}@"), embedded_worker=False)
    with pytest.raises(ConfigError, match="refused to authenticate") as info:
        pyworkflow.list_runs()
    assert WRONG not in str(info.value)
    assert retries == []
