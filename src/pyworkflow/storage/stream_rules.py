"""The rules of durable streams every backend shares: argument checks, size limit, dedup key."""

from __future__ import annotations

from pyworkflow.errors import PayloadTooLargeError

__all__ = ["MAX_INT", "MAX_STREAM_NAME", "check_chunk", "check_read", "chunk_key"]

#: The longest stream name, in characters.
MAX_STREAM_NAME = 200
#: The largest seq, attempt, index or limit (every backend stores 64-bit integers).
MAX_INT = 2**62


def _check_stream(stream: object) -> None:
    if not isinstance(stream, str):
        raise TypeError(f"a stream name must be a str, not {type(stream).__name__}")
    if not stream or len(stream) > MAX_STREAM_NAME:
        raise ValueError(
            f"a stream name must have 1 to {MAX_STREAM_NAME} characters, got {len(stream)}"
        )


def _check_optional_int(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value is not None and not 0 <= value <= MAX_INT:
        raise ValueError(f"{name} must be from 0 to 2**62, got {value}")


def check_chunk(
    run_id: object,
    stream: object,
    data: object,
    step_id: object,
    attempt: object,
    index: object,
    limit: int,
) -> None:
    """Refuse a chunk ``Storage.append_stream_chunk`` may not store.

    ``TypeError`` for a run id, stream name or ``data`` that is not a str, a
    ``step_id`` that is not a str or None, an ``attempt`` or ``index`` that
    is not an int or None; ``ValueError`` for an empty (or over
    :data:`MAX_STREAM_NAME`) stream name or a negative attempt or index;
    :class:`~pyworkflow.errors.PayloadTooLargeError` naming the size when
    ``data`` is over ``limit`` UTF-8 bytes.
    """
    if not isinstance(run_id, str):
        raise TypeError(f"a run id must be a str, not {type(run_id).__name__}")
    _check_stream(stream)
    if not isinstance(data, str):
        raise TypeError(
            f"a stream chunk's data must be a serialized str, not {type(data).__name__}"
        )
    if step_id is not None and not isinstance(step_id, str):
        raise TypeError(f"step_id must be a str or None, not {type(step_id).__name__}")
    _check_optional_int("attempt", attempt)
    _check_optional_int("index", index)
    size = len(data) if data.isascii() else len(data.encode())
    if size > limit:
        raise PayloadTooLargeError(
            f"a chunk of stream {stream!r} of run {run_id} is {size} bytes, over the payload "
            f"limit of {limit} bytes (config key 'max_payload_bytes')"
        )


def check_read(run_id: object, stream: object, after_seq: object, limit: object) -> None:
    """Refuse arguments of ``Storage.read_stream`` of the wrong type or range."""
    if not isinstance(run_id, str):
        raise TypeError(f"a run id must be a str, not {type(run_id).__name__}")
    _check_stream(stream)
    _check_optional_int("after_seq", after_seq)
    _check_optional_int("limit", limit)
    if after_seq is None or limit is None:
        raise TypeError("after_seq and limit must be ints")


def chunk_key(step_id: str | None, index: int | None) -> str | None:
    """The dedup key of a chunk within its stream: None (never deduplicated) without ``index``.

    ``"s:<step_id>:<index>"`` for a step's chunk (every attempt of the step
    shares it), ``"w:<index>"`` for workflow code's chunk. A stream keeps one
    chunk per key: the first written.
    """
    if index is None:
        return None
    return f"w:{index}" if step_id is None else f"s:{step_id}:{index}"
