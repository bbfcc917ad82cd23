"""The HTTP server: hooks over HTTP and a JSON API over runs, as a plain ASGI app."""

from __future__ import annotations

from pyworkflow.jsonshape import jsonable
from pyworkflow.server.app import create_app
from pyworkflow.server.openapi import openapi_document
from pyworkflow.server.options import DEFAULT_MAX_BODY_BYTES, check_bind
from pyworkflow.server.signing import DELIVERY_HEADER, SIGNATURE_HEADER, sign, verify

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "check_bind",
    "create_app",
    "jsonable",
    "openapi_document",
    "sign",
    "verify",
]
