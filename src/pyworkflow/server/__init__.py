"""The HTTP server: hooks over HTTP and a JSON API over runs, as a plain ASGI app."""

from __future__ import annotations

from pyworkflow.server.app import (
    DEFAULT_MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    create_app,
    jsonable,
    sign,
)
from pyworkflow.server.openapi import openapi_document

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "create_app",
    "jsonable",
    "openapi_document",
    "sign",
]
