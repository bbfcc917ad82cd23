"""JSON in and out of the server: strict request bodies, responses that always encode.

Requests: ``Content-Type: application/json`` (415 otherwise, so a web page
cannot post a "simple" cross-site request) and a body that passes
:func:`pyworkflow.jsoninput.loads_strict` (400 otherwise). Responses: :class:`JsonResponse`
never fails to encode, whatever is stored (a lone surrogate is sent as U+FFFD).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from pyworkflow.jsoninput import MAX_JSON_DEPTH, JsonInputError, loads_strict

__all__ = [
    "MAX_JSON_DEPTH",
    "ApiError",
    "JsonResponse",
    "parse_json",
    "read_body",
    "replace_lone_surrogates",
    "require_json",
]


class JsonResponse(JSONResponse):
    """A JSON response that always encodes: valid UTF-8, valid Unicode (I-JSON).

    A string stored by other means (the Python API) may hold a lone
    surrogate such as ``"\\ud800"``, which UTF-8 cannot encode and many JSON
    parsers refuse; it is sent as U+FFFD (the replacement character) instead
    of failing the response with a 500.
    """

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return replace_lone_surrogates(text).encode("utf-8")


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone UTF-16 surrogate replaced by U+FFFD (paired ones are joined)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class ApiError(Exception):
    """A client error turned into a JSON response ``{"detail": ..., ["errors": [...]]}``."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors

    def response(self) -> JsonResponse:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JsonResponse(body, status_code=self.status, headers=headers)


def require_json(request: Request) -> None:
    """415 unless ``Content-Type`` is ``application/json`` (charset, if given, UTF-8)."""
    raw = request.headers.get("content-type")
    media, *params = (raw or "").split(";")
    if media.strip().lower() != "application/json":
        raise ApiError(
            415, "Content-Type must be application/json" + (f", not {raw!r}" if raw else "")
        )
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise ApiError(415, "JSON request bodies must be UTF-8 (charset=utf-8)")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 once it is (announced or found to be) over ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            announced = int(length)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if announced > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes, *, empty_is_null: bool = False) -> Any:
    """A request body under :mod:`pyworkflow.jsoninput`'s rule; else 400."""
    if not body.strip():
        if empty_is_null:
            return None
        raise ApiError(400, "request body must be JSON (it is empty)")
    try:
        return loads_strict(body)
    except JsonInputError as exc:
        raise ApiError(400, f"request body is not acceptable JSON: {exc}") from None
