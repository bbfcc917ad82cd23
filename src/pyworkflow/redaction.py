"""Keeping secrets out of output: passwords in URLs and secret-named settings become ``***``.

One rule for every surface that prints or logs configuration (``pyworkflow
config``, the log sinks of :func:`pyworkflow.enable_logging`, error
messages, the plugins):

- a URL keeps its user name and loses its password:
  ``redis://:***@127.0.0.1:6379/0``, ``postgresql://app:***@host/db``;
- a query parameter, a ``key=value`` pair or a setting whose *name* is
  secret loses its value (``?password=***``, ``api_token = "***"``).

A name is secret when it contains ``password``, ``passwd``, ``passphrase``,
``pwd``, ``secret``, ``token``, ``credential`` or ``apikey`` (any case, so
``sslpassword`` and ``API_TOKEN`` count), or has the word ``key``/``keys``
(``api_key``, ``signing_key``, ``signingKeys``; not ``keepalive``,
``ssl_keyfile``). When in doubt the rule redacts: a hidden value costs less
than a leaked one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

__all__ = [
    "MASK",
    "is_secret_key",
    "redact_settings",
    "redact_text",
    "redact_url",
    "redacted_repr",
    "url_password",
]

#: What a redacted value is replaced with.
MASK = "***"

_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "credential",
    "apikey",
)
_SECRET_WORDS = frozenset({"key", "keys"})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: A port and a path after ``host:``, which the ``user:password@`` reading would mistake
#: for a password when an ``@`` comes later (``https://host:8080/users/@me``).
_PORT_AND_PATH = re.compile(r"\d{1,5}/")
#: What follows the ``@`` of the user info: host[:port], or a list of them, then the path.
_HOST = r"(?:\[[^\]/?#@\s]*\]|[^\s/?#@:\[\],]+)(?::\d*)?"
_HOSTS = re.compile(rf"{_HOST}(?:,{_HOST})*(?:[/?#]|$)")
#: A query or fragment parameter: separator, name, ``=``, value.
_PARAM = re.compile(r"([?&#;])([^=&#;?]+)=([^&#;]*)")
#: URLs inside free text: a quoted one up to its closing quote (a repr in an error
#: message, whatever its password holds), else up to whitespace or a quote.
_QUOTED_URL = re.compile(r"(?P<q>['\"])(?P<url>[A-Za-z][A-Za-z0-9+.\-]*://[^'\"\n]*)(?P=q)")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
#: ``name=value`` (libpq DSNs, reprs of objects), the value bare or quoted.
_ASSIGNMENT = re.compile(
    r"(?P<name>[A-Za-z_][\w.\-]*)(?P<eq>\s*=\s*)"
    r"(?P<value>'[^']*'|\"(?:[^\"\\]|\\.)*\"|[^\s&,;)'\"]+)"
)
#: ``'name': value`` / ``"name": value`` (dict reprs, JSON).
_ITEM = re.compile(
    r"(?P<q>['\"])(?P<name>[^'\"]+)(?P=q)(?P<colon>\s*:\s*)"
    r"(?P<value>'[^']*'|\"(?:[^\"\\]|\\.)*\"|[^\s,}\]]+)"
)


def is_secret_key(name: str) -> bool:
    """Whether a setting, query parameter or log field called ``name`` holds a secret.

    See the module docstring for the rule: ``api_token``, ``sslpassword``,
    ``client_secret``, ``signing_key`` are secret; ``keepalive``,
    ``ssl_keyfile``, ``broker_url`` are not.
    """
    lowered = name.lower()
    squashed = re.sub(r"[^a-z0-9]", "", lowered)
    if any(part in squashed for part in _SECRET_PARTS):
        return True
    words = _WORD.findall(_CAMEL.sub(r"\1_\2", name).lower())
    return any(word in _SECRET_WORDS for word in words)


def _split_userinfo(rest: str) -> tuple[str, str, str] | None:
    """``user:password@host...`` -> (``user:``, ``password``, ``@host...``), or None.

    ``rest`` is what follows ``scheme://``. The password ends at the first
    ``@`` that a host (or host list) follows, as URL parsers read it, so an
    unencoded ``/``, ``?``, ``#`` or ``@`` in it is still hidden whole; with
    no such ``@``, at the last one (hiding too much rather than too little).
    """
    user_end = 0
    while user_end < len(rest) and rest[user_end] not in ":/?#@[":
        user_end += 1
    if user_end >= len(rest) or rest[user_end] != ":":
        return None
    ats = [i for i in range(user_end + 1, len(rest)) if rest[i] == "@"]
    if not ats:
        return None
    at = next((i for i in ats if _HOSTS.match(rest, i + 1)), ats[-1])
    password = rest[user_end + 1 : at]
    if _PORT_AND_PATH.match(password):  # host:port/path with an @ further on
        return None
    return rest[: user_end + 1], password, rest[at:]


def _redact_params(tail: str) -> str:
    """Hide the values of secret-named ``?name=value`` parameters in ``tail``."""

    def hide(match: re.Match[str]) -> str:
        sep, name, value = match.group(1), match.group(2), match.group(3)
        if value and is_secret_key(unquote_plus(name)):
            return f"{sep}{name}={MASK}"
        return match.group(0)

    return _PARAM.sub(hide, tail)


def redact_url(url: str) -> str:
    """``url`` with its password and secret query parameters replaced by ``***``.

    ``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0``;
    ``postgresql://app:pw@host/db`` -> ``postgresql://app:***@host/db``;
    ``https://host/x?token=abc&page=2`` -> ``https://host/x?token=***&page=2``.
    The user name, host, path and other parameters stay as written. A
    string without ``scheme://`` is read as ``user:password@host`` if it
    looks like one; anything else comes back with only its secret-named
    parameters hidden, never with a password that could not be parsed.
    """
    match = _SCHEME.match(url)
    head, rest = (url[: match.end()], url[match.end() :]) if match else ("", url)
    split = _split_userinfo(rest)
    if split is not None and split[1]:
        user, _, after = split
        rest = f"{user}{MASK}{after}"
    return head + _redact_params(rest)


def url_password(url: str) -> str | None:
    """The password of ``url`` as :func:`redact_url` reads it (still percent-encoded), or None.

    Storage plugins compare it with their own parser's reading to refuse a
    password whose special characters were not percent-encoded, instead of
    quoting a piece of it in an error.
    """
    match = _SCHEME.match(url)
    split = _split_userinfo(url[match.end() :] if match else url)
    return None if split is None else split[1]


def _redact_pair(match: re.Match[str]) -> str:
    """The matched ``name=value`` or ``'name': value`` with the value hidden if secret."""
    if not is_secret_key(match.group("name")):
        return match.group(0)
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    start = match.group(0)[: match.start("value") - match.start(0)]
    return f"{start}{quote}{MASK}{quote}"


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with every secret in it replaced by ``***``.

    Scrubs URLs with a password or secret parameters (:func:`redact_url`;
    a password with a space is caught only in a quoted URL, as reprs quote them),
    ``password=...``-style assignments and ``'api_token': ...`` items of
    dict reprs and JSON whose name :func:`is_secret_key`.
    """
    if "://" in text:
        text = _QUOTED_URL.sub(lambda m: m["q"] + redact_url(m["url"]) + m["q"], text)
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    if "=" in text:
        text = _ASSIGNMENT.sub(_redact_pair, text)
    if ":" in text:
        text = _ITEM.sub(_redact_pair, text)
    return text


def redacted_repr(name: str, value: Any) -> str:
    """``repr(value)`` for a message about setting ``name``, safe to show.

    ``***`` when ``name`` is secret (:func:`is_secret_key`); otherwise the
    repr with :func:`redact_text` applied (a URL's password hidden).
    """
    if is_secret_key(name):
        return MASK
    return redact_text(repr(value))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact_settings(value)
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(item) for item in value)
    return value


def redact_settings(settings: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of ``settings`` (nested mappings and lists too) safe to print or log.

    The value of a secret-named key (:func:`is_secret_key`) becomes ``***``
    whatever its type, unless it is ``None`` or ``""`` (nothing set, nothing
    to hide); strings elsewhere go through :func:`redact_text`, so a URL's
    password is hidden under any key.
    """
    redacted: dict[Any, Any] = {}
    for key, value in settings.items():
        if is_secret_key(str(key)) and value not in (None, ""):
            redacted[key] = MASK
        else:
            redacted[key] = _redact_value(value)
    return redacted
