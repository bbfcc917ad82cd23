"""Durable streams: a step publishes its progress; the terminal follows it live.

The ``index`` step writes one chunk per document to the run's ``progress``
stream. The reader below follows that stream while the run works and stops
when the run has ended and every chunk is printed. Chunks are stored, so a
reader that starts late (or reconnects with ``after=``) misses nothing, and a
step retried after a crash does not write them twice. ``pyworkflow runs stream
RUN_ID progress`` and ``GET /api/runs/{id}/streams/progress`` (server-sent
events) read the same stream. See docs/streams.md.
"""

from __future__ import annotations

import anyio

from pyworkflow import get_result, read_stream_sync, start, step, workflow, write_stream


@step()
async def index(documents: list[str]) -> int:
    words = 0
    for n, document in enumerate(documents, start=1):
        await anyio.sleep(0.05)  # the real work
        words += len(document.split())
        await write_stream("progress", {"done": n, "of": len(documents), "words": words})
    return words


@workflow
async def indexing(documents: list[str]) -> int:
    return await index(documents)


if __name__ == "__main__":
    docs = [f"document number {i} " * (i + 1) for i in range(8)]
    run_id = start(indexing, docs)
    for item in read_stream_sync(run_id, "progress", poll=0.05):
        p = item.value
        bar = "#" * p["done"] + "." * (p["of"] - p["done"])
        print(f"[{bar}] {p['done']}/{p['of']} documents, {p['words']} words")
    print("indexed words:", get_result(run_id, timeout=60))
