"""Signed hook requests: a timestamped HMAC-SHA256 header, a replay window, delivery ids.

A hook created with ``secret=`` only accepts requests carrying
``X-PyWorkflow-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
``HMAC-SHA256(secret, "<t>." + raw body)``. A request whose ``t`` is further
than the tolerance (default 300 s) from the server's clock is refused, so a
captured request cannot be replayed later; within the window, the same
request (same signature) or the same ``X-PyWorkflow-Delivery`` id is
acknowledged once and recorded once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "SignatureError",
    "sign",
    "verify",
]

#: Header carrying ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
SIGNATURE_HEADER = "X-PyWorkflow-Signature"
#: Optional header naming one delivery: a repeated id is acknowledged, not recorded again.
DELIVERY_HEADER = "X-PyWorkflow-Delivery"

_HEX64 = re.compile(r"[0-9a-f]{64}")


class SignatureError(Exception):
    """A signed hook request was refused (401); the message says why, never the secret."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-PyWorkflow-Signature`` value for ``body``, signed now (or at ``timestamp``)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={_digest(secret, moment, body)}"


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header (expected t=...,v1=...)")
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                raise SignatureError(f"malformed timestamp in {SIGNATURE_HEADER} header")
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value.lower())
        # other schemes (v0, future versions) are ignored, as senders may send several
    if timestamp is None or not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header (expected t=...,v1=...)")
    return timestamp, signatures


def verify(
    secret: str, body: bytes, header: str | None, *, tolerance: float, now: float | None = None
) -> str:
    """Check a signed request; return its matching ``v1`` signature (a replay key).

    Raises :class:`SignatureError` when the header is missing or malformed,
    its timestamp is outside ``tolerance`` seconds of ``now``, or no ``v1``
    signature matches.
    """
    if header is None:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError(
            f"{SIGNATURE_HEADER} timestamp is outside the {tolerance:g} s tolerance window "
            "(stale or replayed request, or a clock out of sync)"
        )
    expected = _digest(secret, timestamp, body)
    for given in signatures:
        if _HEX64.fullmatch(given) and hmac.compare_digest(given, expected):
            return expected
    raise SignatureError(f"invalid {SIGNATURE_HEADER} signature")
