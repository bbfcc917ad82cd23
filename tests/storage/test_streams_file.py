"""File storage's stream files: a torn last line (a crash mid-append) is ignored and cut off."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyworkflow.models import EventType, NewEvent, Run, RunStatus, utcnow
from pyworkflow.storage.file import FileStorage


@pytest.mark.anyio
async def test_a_torn_chunk_line_is_ignored_then_replaced(tmp_path: Path) -> None:
    async with FileStorage(f"file://{tmp_path / 'store'}") as storage:
        now = utcnow()
        run = Run("r", "wf", RunStatus.PENDING, "{}", "json", now, now)
        await storage.create_run(run, [NewEvent(EventType.WORKFLOW_STARTED)])
        await storage.append_stream_chunk("r", "out", '"a"', step_id="s", index=0)
        await storage.append_stream_chunk("r", "out", '"b"', step_id="s", index=1)
        (path,) = (tmp_path / "store" / "streams").glob("*/*.jsonl")
        with open(path, "ab") as fh:
            fh.write(b'[3,"\\"c')  # the process died while writing chunk 3
        assert [c.data for c in await storage.read_stream("r", "out")] == ['"a"', '"b"']
        assert await storage.list_streams("r") == ["out"]
        # the retried attempt writes its chunks again: 0 and 1 are kept, 2 takes seq 3
        assert await storage.append_stream_chunk("r", "out", '"a2"', step_id="s", index=0) == 1
        assert await storage.append_stream_chunk("r", "out", '"c"', step_id="s", index=2) == 3
        chunks = await storage.read_stream("r", "out")
        assert [(c.seq, c.data) for c in chunks] == [(1, '"a"'), (2, '"b"'), (3, '"c"')]
        assert path.read_bytes().count(b"\n") == 3 and path.read_bytes().endswith(b"\n")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
