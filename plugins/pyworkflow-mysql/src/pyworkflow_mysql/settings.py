"""``[tool.pyworkflow.mysql]`` and the storage URL: the MySQL / MariaDB backend's options."""

from __future__ import annotations

import re

import attrs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError
from pyworkflow.plugin_options import (
    option_bool,
    option_positive_int,
    option_seconds,
    parse_plugin_table,
)
from pyworkflow.redaction import redact_text, redact_url

__all__ = ["SCHEMES", "MySQLSettings", "parse_url"]

#: The URL schemes of this backend; the driver is always aiomysql.
SCHEMES = ("mysql", "mariadb", "mysql+aiomysql", "mariadb+aiomysql")
#: A database name the storage may create: letters, digits, ``_`` and ``$`` (at most 64).
DATABASE_NAME = re.compile(r"^[A-Za-z0-9_$]{1,64}$")
_EXAMPLE = "mysql://user:password@host:3306/database"


@attrs.frozen(kw_only=True)
class MySQLSettings:
    """Options of the MySQL / MariaDB storage, from ``[tool.pyworkflow.mysql]``.

    Every option can also come from ``PYWORKFLOW_MYSQL__<OPTION>`` or
    ``configure(mysql={...})``.
    """

    #: Connections one process keeps open for its operations (SQLAlchemy's pool).
    pool_size: int = 10
    #: Extra connections allowed beyond ``pool_size`` under load.
    max_overflow: int = 10
    #: Seconds to keep retrying while the database is unreachable before an
    #: operation fails.
    reconnect_timeout: float = 60.0
    #: Seconds to wait for one connection attempt.
    connect_timeout: float = 10.0
    #: Seconds a one-shot ``pyworkflow`` command (``runs list``, ``runs show``,
    #: ``hooks resume``, ``run``...; not ``worker`` or ``serve``) keeps trying to
    #: reach the database before it fails, in place of ``reconnect_timeout``.
    command_timeout: float = 5.0
    #: Seconds one statement waits for a row lock (``innodb_lock_wait_timeout`` of
    #: each session) before it is rolled back and the operation retried.
    lock_wait_timeout: int = 10
    #: Create the database if it is missing, and create and upgrade the tables at
    #: start-up; with False they must already be at this plugin's schema version.
    migrate: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> MySQLSettings:
        """Parse the ``mysql`` plugin table; bad keys or values are a ConfigError."""
        values = parse_plugin_table(
            settings,
            "mysql",
            {
                "pool_size": option_positive_int,
                "max_overflow": option_positive_int,
                "reconnect_timeout": option_seconds,
                "connect_timeout": option_seconds,
                "command_timeout": option_seconds,
                "lock_wait_timeout": option_positive_int,
                "migrate": option_bool,
            },
        )
        return cls(**values)


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL (``mysql+aiomysql``) of a storage URL; ConfigError if it is not one.

    ``mysql://``, ``mariadb://`` and their ``+aiomysql`` spellings are
    accepted; another driver (``mysql+pymysql://``) is a ConfigError, and so is
    a URL without a database. Query parameters go to the driver.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SCHEMES:
        raise ConfigError(
            f"storage URL {redact_url(url)!r}: the MySQL storage uses aiomysql; write "
            f"{_EXAMPLE} (or mariadb://..., mysql+aiomysql://...)"
        )
    try:
        parsed = make_url(f"mysql+aiomysql://{rest}")
    except ArgumentError as exc:
        raise ConfigError(
            f"invalid MySQL storage URL {redact_url(url)!r}: {redact_text(str(exc))}"
        ) from None
    except ValueError as exc:  # a port that is not a number
        raise ConfigError(
            f"invalid MySQL storage URL {redact_url(url)!r}: {redact_text(str(exc))}; "
            f"write {_EXAMPLE}"
        ) from None
    if not parsed.database:
        raise ConfigError(
            f"MySQL storage URL {redact_url(url)!r} names no database; write {_EXAMPLE}"
        )
    if "/" in parsed.database:
        raise ConfigError(
            f"MySQL storage URL {redact_url(url)!r}: the database name "
            f"{parsed.database!r} contains '/'; write {_EXAMPLE}"
        )
    return parsed
