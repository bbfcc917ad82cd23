"""The seed README's error-handling example against a local test HTTP server.

``call_external_api`` is the seed's step; the seed's ``await httpx.get(url)``
becomes ``httpx.AsyncClient`` (``httpx.get`` is not awaitable). A tiny server
on 127.0.0.1 answers 500 twice and then 200 on ``/flaky``, and 404 on
``/missing``.

It calls HTTP with httpx, which PyWorkflow itself does not need: install it
with ``pip install httpx`` (or ``pip install -e ".[examples]"``).
"""

from __future__ import annotations

import http.server
import json
import sys
import threading

try:
    import httpx
except ImportError:  # pragma: no cover - exercised by tests/test_examples.py
    sys.exit(
        "examples/error_handling.py calls an HTTP API with httpx, which PyWorkflow does not "
        'install: pip install httpx (or pip install -e ".[examples]")'
    )

from pyworkflow import FatalError, RetryableError, get_result, start, step, workflow


@step(max_retries=5, retry_delay="exponential", retry_base="0.1s")
async def call_external_api(url: str):
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)

        if response.status_code == 404:
            raise FatalError("Resource not found")  # Don't retry

        if response.status_code >= 500:
            raise RetryableError("Server error", retry_after="0.2s")  # seed: "30s"

        return response.json()
    except httpx.NetworkError:
        raise RetryableError("Network error")  # Retry with exponential backoff


@workflow
async def fetch_both(base: str):
    data = await call_external_api(f"{base}/flaky")
    try:
        await call_external_api(f"{base}/missing")
        missing = "found"
    except FatalError as exc:
        missing = f"not found: {exc}"
    return {"data": data, "missing": missing}


class _Handler(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        if self.path == "/flaky":
            type(self).hits += 1
            code = 500 if type(self).hits <= 2 else 200
        else:
            code = 404
        body = json.dumps({"ok": code == 200, "hits": type(self).hits}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run_id = start(fetch_both, f"http://127.0.0.1:{server.server_address[1]}")
    print(get_result(run_id, timeout=60))
    server.shutdown()
