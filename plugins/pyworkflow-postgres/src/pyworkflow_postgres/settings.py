"""``[tool.pyworkflow.postgres]`` and the storage URL: the PostgreSQL backend's options."""

from __future__ import annotations

import re
from typing import Any

import attrs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError
from pyworkflow.plugin_options import (
    option_bool,
    option_positive_int,
    option_seconds,
    option_text,
    parse_plugin_table,
)
from pyworkflow.redaction import redact_text, redact_url

__all__ = ["PostgresSettings", "parse_url"]

#: Query parameters of the storage URL that are PyWorkflow's, not the driver's.
URL_OPTIONS = ("schema",)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schema(value: Any) -> str:
    text = option_text(value)
    if not _IDENTIFIER.match(text):
        raise TypeError("a lower-case SQL identifier (letters, digits, _; at most 63)")
    return text


@attrs.frozen(kw_only=True)
class PostgresSettings:
    """Options of the PostgreSQL storage, from ``[tool.pyworkflow.postgres]``.

    Every option can also come from ``PYWORKFLOW_POSTGRES__<OPTION>`` or
    ``configure(postgres={...})``; ``schema`` also from the URL
    (``?schema=name``), which wins.
    """

    #: PostgreSQL schema holding PyWorkflow's tables (created if missing).
    schema: str = "public"
    #: Connections one process opens for its operations (plus ``max_overflow`` on
    #: bursts): one asyncpg pool of at most ``pool_size + max_overflow``,
    #: opened as needed, idle ones closed after 5 minutes.
    pool_size: int = 10
    #: Extra connections allowed beyond ``pool_size`` under load.
    max_overflow: int = 10
    #: Wake idle workers with ``LISTEN/NOTIFY`` (polling continues either way).
    notify: bool = True
    #: Seconds to keep retrying while the database is unreachable before an
    #: operation fails.
    reconnect_timeout: float = 60.0
    #: Seconds to wait for one connection attempt.
    connect_timeout: float = 10.0
    #: Seconds a one-shot ``pyworkflow`` command (``runs list``, ``runs show``,
    #: ``hooks resume``, ``run``...; not ``worker`` or ``serve``) keeps trying to
    #: reach the database before it fails, in place of ``reconnect_timeout``.
    command_timeout: float = 5.0
    #: Create and upgrade the tables at start-up; with False the tables must
    #: already be at this plugin's schema version (managed elsewhere).
    migrate: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgresSettings:
        """Parse the ``postgres`` plugin table; bad keys or values are a ConfigError."""
        values = parse_plugin_table(
            settings,
            "postgres",
            {
                "schema": _schema,
                "pool_size": option_positive_int,
                "max_overflow": option_positive_int,
                "notify": option_bool,
                "reconnect_timeout": option_seconds,
                "connect_timeout": option_seconds,
                "command_timeout": option_seconds,
                "migrate": option_bool,
            },
        )
        return cls(**values)


def parse_url(url: str, settings: PostgresSettings) -> tuple[URL, PostgresSettings]:
    """The SQLAlchemy URL (``postgresql+asyncpg``) and settings with URL options applied.

    ``postgresql://``, ``postgres://`` and ``postgresql+asyncpg://`` are
    accepted; another driver (``postgresql+psycopg2://``) is a ConfigError.
    """
    scheme = url.partition("://")[0].lower()
    if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ConfigError(
            f"storage URL {redact_url(url)!r}: the PostgreSQL storage uses asyncpg; write "
            "postgresql://user:password@host:5432/database (or postgresql+asyncpg://...)"
        )
    rest = url.partition("://")[2]
    try:
        parsed = make_url(f"postgresql+asyncpg://{rest}")
    except ArgumentError as exc:
        raise ConfigError(
            f"invalid PostgreSQL storage URL {redact_url(url)!r}: {redact_text(str(exc))}"
        ) from None
    if not parsed.database:
        raise ConfigError(
            f"PostgreSQL storage URL {redact_url(url)!r} names no database; "
            "write postgresql://user:password@host:5432/database"
        )
    query = dict(parsed.query)
    if "schema" in query:
        raw = query.pop("schema")
        try:
            settings = attrs.evolve(settings, schema=_schema(raw if isinstance(raw, str) else ""))
        except TypeError as exc:
            raise ConfigError(
                f"PostgreSQL storage URL {redact_url(url)!r}: ?schema= must be {exc}, got {raw!r}"
            ) from None
    return parsed.set(query=query), settings
