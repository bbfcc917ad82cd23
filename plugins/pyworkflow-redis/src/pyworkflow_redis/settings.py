"""``[tool.pyworkflow.redis]`` and the ``redis://`` URL: the Redis storage's options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError
from pyworkflow.plugin_options import option_choice, option_seconds, option_text, parse_plugin_table
from pyworkflow.redaction import redact_url, url_password

__all__ = ["DURABILITY", "REDIS_QUERY_OPTIONS", "RedisSettings", "parse_storage_url"]

#: Allowed values of the ``durability`` option.
DURABILITY = ("fsync", "relaxed")
#: Query parameters of the URL handed to redis-py (everything else is refused).
REDIS_QUERY_OPTIONS = frozenset(
    {
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_read_size",
        "health_check_interval",
        "max_connections",
        "timeout",
        "client_name",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)


def _prefix(value: Any) -> str:
    text = option_text(value)
    if any(c.isspace() for c in text):
        raise TypeError("a non-empty string without spaces")
    return text


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "prefix": _prefix,
    "durability": option_choice(*DURABILITY),
    "reconnect_timeout": option_seconds,
}


@attrs.frozen(kw_only=True)
class RedisSettings:
    """Options of the Redis storage, from ``[tool.pyworkflow.redis]`` and the URL query.

    Every option can also come from ``PYWORKFLOW_REDIS__<OPTION>``,
    ``configure(redis={...})`` or the storage URL's query
    (``redis://host:6379/0?prefix=myapp``), the URL winning.
    """

    #: First part of every key (``<prefix>:run:<id>``, ...), so apps can share one Redis.
    prefix: str = "pyworkflow"
    #: ``"fsync"`` (default): refuse a server that does not fsync every write
    #: (``appendonly yes`` + ``appendfsync always``); ``"relaxed"``: accept any server.
    durability: str = "fsync"
    #: Seconds a call keeps retrying (exponential backoff) while Redis is unreachable,
    #: before it fails with ``StorageUnavailableError``.
    reconnect_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings | None) -> RedisSettings:
        """Parse the ``redis`` plugin table; a bad key or value is a ConfigError naming it."""
        if settings is None:
            return cls()
        return cls(**parse_plugin_table(settings, "redis", _PARSERS))


def _parse_query(url: str, options: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, raw in options.items():
        try:
            values[key] = _PARSERS[key](raw)
        except TypeError as exc:
            raise _url_error(url, f"?{key}= must be {exc}, got {raw!r}") from None
    return values


def _url_error(url: str, problem: str) -> ConfigError:
    return ConfigError(
        f"invalid Redis storage URL {redact_url(url)!r} (config key 'storage'): {problem}; "
        "use redis://[user:password@]host[:port][/db][?prefix=...&durability=...] "
        "or rediss:// for TLS"
    )


def parse_storage_url(url: str, settings: Settings | None = None) -> tuple[str, RedisSettings]:
    """Split a storage URL into the URL redis-py connects to and the storage's options.

    ``prefix``, ``durability`` and ``reconnect_timeout`` in the query override
    ``[tool.pyworkflow.redis]``; other query parameters must be connection
    options redis-py understands (``socket_timeout``, ``ssl_ca_certs``, ...).
    Raises :class:`~pyworkflow.errors.ConfigError` saying what is wrong.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _url_error(url, str(exc)) from None
    if parts.password != url_password(url):  # an unencoded / ? # cut it: quote none of it
        raise _url_error(
            url,
            "percent-encode the special characters of the password "
            "('/' as %2F, '?' as %3F, '#' as %23)",
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise _url_error(url, str(exc)) from None
    if parts.scheme not in ("redis", "rediss"):
        raise _url_error(url, f"the scheme must be redis or rediss, not {parts.scheme!r}")
    if port == 0:
        raise _url_error(url, "port 0 is not a port")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise _url_error(url, f"the path must be a database number, not {parts.path!r}")
    if parts.fragment:
        raise _url_error(url, "a URL fragment ('#...') means nothing here")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise _url_error(url, f"bad query string: {exc}") from None
    for key, value in query:
        if key in _PARSERS:
            ours[key] = value
        elif key in REDIS_QUERY_OPTIONS:
            theirs.append((key, value))
        elif key == "db":
            raise _url_error(url, "give the database number as the path (redis://host:6379/2)")
        else:
            valid = ", ".join(sorted({*_PARSERS, *REDIS_QUERY_OPTIONS}))
            raise _url_error(url, f"unknown query parameter {key!r} (valid: {valid})")
    base = RedisSettings.from_settings(settings)
    options = attrs.evolve(base, **_parse_query(url, ours))
    connect = urlunsplit(parts._replace(query=urlencode(theirs), fragment=""))
    return connect, options
