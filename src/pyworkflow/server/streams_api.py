"""``GET /api/runs/{run_id}/streams/{name}``: a run's durable stream as server-sent events.

Each chunk is one event: ``id`` its seq, ``event: chunk``, ``data`` the chunk
as the run's serializer stored it (JSON by default). The response follows the
stream until the run has ended and every chunk is sent, then sends
``event: end`` and closes; while nothing new comes it sends a ``: keep-alive``
comment every :data:`KEEPALIVE` seconds. A client resumes after the last event it saw with
the ``Last-Event-ID`` header (browsers' ``EventSource`` sends it when it
reconnects) or ``?after=SEQ``. See ``docs/streams.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pyworkflow import client
from pyworkflow.errors import RunNotFoundError
from pyworkflow.models import StreamChunk
from pyworkflow.server.wire import ApiError
from pyworkflow.storage.stream_rules import check_read

__all__ = ["KEEPALIVE", "MAX_SEQ", "POLL", "sse_event", "stream_routes"]

Handler = Callable[[Request], Awaitable[Response]]

#: Seconds between polls of the storage while the stream has nothing new.
POLL = 0.25
#: The largest seq a client may name (storage integers are 64-bit).
MAX_SEQ = 2**62
#: Seconds without a chunk after which an SSE comment (``: keep-alive``) is sent, so that
#: proxies and load balancers do not close a quiet stream as idle.
KEEPALIVE = 15.0
#: How long (ms) an ``EventSource`` waits before reconnecting.
RETRY_MS = 1000


def sse_event(chunk: StreamChunk) -> bytes:
    """One chunk as a server-sent event (one ``data:`` line per line of its data)."""
    lines = chunk.data.splitlines() or [""]
    data = "".join(f"data: {line}\n" for line in lines)
    return f"id: {chunk.seq}\nevent: chunk\n{data}\n".encode()


def _after(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_SEQ:
        raise ApiError(
            422, f"Last-Event-ID or after must be a seq (a number from 0 to 2**62), not {raw!r}"
        )
    return int(raw)


def stream_routes(api: Callable[[Handler], Handler]) -> list[Route]:
    """The route, wrapped in ``api`` (the API token, when one is set)."""
    from pyworkflow.streams import follow_chunks_idle

    async def stream(request: Request) -> Response:
        run_id, name = request.path_params["run_id"], request.path_params["name"]
        after = _after(request)
        try:
            check_read(run_id, name, after, 1)
        except (TypeError, ValueError) as exc:
            raise ApiError(422, str(exc)) from None
        try:
            await client.aget_run(run_id)
        except RunNotFoundError:
            raise ApiError(404, f"no run {run_id!r}") from None

        async def events() -> AsyncIterator[bytes]:
            yield f"retry: {RETRY_MS}\n\n".encode()
            chunks = follow_chunks_idle(run_id, name, after=after, poll=POLL, idle=KEEPALIVE)
            async for chunk in chunks:
                yield b": keep-alive\n\n" if chunk is None else sse_event(chunk)
            yield b"event: end\ndata: {}\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return [Route("/api/runs/{run_id}/streams/{name:path}", api(stream), methods=["GET"])]
