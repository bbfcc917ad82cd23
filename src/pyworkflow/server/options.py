"""The server's options (``[tool.pyworkflow.server]``) and the rules that guard them.

Every option is parsed strictly: an empty or too short API token, a wildcard or
malformed CORS origin, a non-positive limit is a :class:`ConfigError` naming the
option, never silently "no auth" or "no limit".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
from loguru import logger

from pyworkflow.config import Settings
from pyworkflow.errors import ConfigError
from pyworkflow.plugin_options import (
    option_bool,
    option_positive_int,
    option_seconds,
    option_text,
    parse_plugin_table,
)
from pyworkflow.runtime import get_runtime

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_SIGNATURE_TOLERANCE",
    "MIN_TOKEN_LENGTH",
    "ServerOptions",
    "check_bind",
    "check_token",
    "is_loopback",
    "server_options",
]

#: Largest request body accepted when ``server.max_body_bytes`` is not set (1 MiB).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: How far (seconds) a signed hook request's timestamp may be from the server's clock.
DEFAULT_SIGNATURE_TOLERANCE = 300.0
#: Shortest API token accepted: 16 characters (``secrets.token_urlsafe(32)`` gives 43).
MIN_TOKEN_LENGTH = 16
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

_log = logger.bind(component="server")


@attrs.frozen
class ServerOptions:
    """The parsed ``[tool.pyworkflow.server]`` table (defaults filled in)."""

    api_token: str | None = attrs.field(default=None, repr=False)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    signature_tolerance: float = DEFAULT_SIGNATURE_TOLERANCE
    cors_origins: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    insecure_no_auth: bool = False


def check_token(value: Any, source: str) -> str:
    """An API token: a string of at least ``MIN_TOKEN_LENGTH`` non-blank characters.

    An empty value is an error, not "auth off": ``--api-token "$UNSET_VAR"``
    must not open the server. The message never echoes the value.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{source} must be a string, got a value of type {type(value).__name__}")
    token = value.strip()
    if not token:
        raise ConfigError(
            f"{source} is empty; an empty token does not turn authentication off. Set a token "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))') or leave it unset"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{source} is too short ({len(token)} characters); use at least "
            f"{MIN_TOKEN_LENGTH} random characters, for example "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise ConfigError(f"{source} must be printable ASCII without spaces (a header value)")
    return token


def _option_token(value: Any) -> str:
    try:
        return check_token(value, "the API token")
    except ConfigError as exc:
        raise TypeError(f"a valid API token ({exc})") from None


def check_origin(value: Any) -> str:
    """A CORS origin: ``scheme://host[:port]``, no path, no wildcard."""
    if not isinstance(value, str):
        raise TypeError("a list of origins such as 'https://app.example.com'")
    origin = value.strip().rstrip("/")
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or "*" in origin
    ):
        raise TypeError(
            f"a list of origins such as 'https://app.example.com' (scheme://host[:port], "
            f"no path or wildcard); {value!r} is not one"
        )
    return origin


def _option_origins(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise TypeError("a list of origins such as 'https://app.example.com'")
    return tuple(check_origin(item) for item in items if not isinstance(item, str) or item.strip())


def _option_port(value: Any) -> int:
    port = option_positive_int(value)
    if port > 65535:
        raise TypeError("a TCP port (1-65535)")
    return port


_PARSERS: Mapping[str, Callable[[Any], Any]] = {
    "api_token": _option_token,
    "max_body_bytes": option_positive_int,
    "signature_tolerance": option_seconds,
    "cors_origins": _option_origins,
    "host": option_text,
    "port": _option_port,
    "insecure_no_auth": option_bool,
}


def server_options(settings: Settings | None = None) -> ServerOptions:
    """``[tool.pyworkflow.server]`` parsed (ConfigError if invalid).

    From ``settings``, else from the running runtime's settings.
    """
    source = get_runtime().settings if settings is None else settings
    values = parse_plugin_table(source, "server", _PARSERS)
    return ServerOptions(**values)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_bind(host: str, api_token: str | None, *, insecure_no_auth: bool) -> None:
    """Refuse to expose the API without a token; warn once when serving without one locally.

    Binding a non-loopback address (``0.0.0.0``, a LAN address, a host name)
    without an API token is a :class:`ConfigError` unless ``insecure_no_auth``
    is set (``--insecure-no-auth`` / ``server.insecure_no_auth``).
    """
    if api_token is not None:
        return
    if not is_loopback(host):
        if not insecure_no_auth:
            raise ConfigError(
                f"refusing to serve the API on {host!r} without an API token: anyone who can "
                "reach that address could start and cancel runs and read their data. Set "
                "--api-token / server.api_token, bind 127.0.0.1, or pass --insecure-no-auth "
                "(server.insecure_no_auth = true) if something in front of the server "
                "authenticates requests"
            )
        _log.bind(host=host).warning(
            "serving the API on {} WITHOUT authentication (--insecure-no-auth)", host
        )
        return
    _log.bind(host=host).warning(
        "serving the API on {} without an API token: any process on this machine can use "
        "/api/*; set --api-token or server.api_token",
        host,
    )
