"""File storage survives a writer killed mid-append and torn last lines."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pyworkflow.models import EventType, NewEvent, Run, RunStatus, utcnow
from pyworkflow.storage.file import FileStorage

WRITER = textwrap.dedent(
    """
    import sys, anyio
    from pyworkflow.models import EventType, NewEvent, Run, RunStatus, utcnow
    from pyworkflow.storage.file import FileStorage

    async def main(url):
        storage = FileStorage(url)
        await storage.open()
        now = utcnow()
        run = Run(run_id="r1", workflow_name="w", status=RunStatus.RUNNING, input="{}",
                  serializer="json", created_at=now, updated_at=now)
        await storage.create_run(run, [])
        seq = 0
        while True:
            batch = [NewEvent(EventType.STEP_COMPLETED, str(seq + i), {"result": "x" * 300})
                     for i in range(1, 4)]
            seq = await storage.append_events("r1", seq, batch)
            print(seq, flush=True)  # acknowledged

    anyio.run(main, sys.argv[1])
    """
)


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.parametrize("after", [3, 40, 150])
async def test_sigkill_mid_append_loses_nothing_acknowledged(tmp_path: Path, after: int) -> None:
    url = f"file://{tmp_path / 'store'}"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = [int(proc.stdout.readline()) for _ in range(after)]
    time.sleep(0.002 * after % 0.01)  # land the kill at different points of an append
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    acknowledged += [int(line) for line in out.split()]
    storage = FileStorage(url)
    await storage.open()
    events = await storage.get_events("r1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) >= acknowledged[-1]
    run = await storage.get_run("r1")
    # the store still accepts appends after the crash
    new_last = await storage.append_events(
        "r1", run.last_seq, [NewEvent(EventType.STEP_COMPLETED, "z", {"result": "after"})]
    )
    assert [e.seq for e in await storage.get_events("r1")] == list(range(1, new_last + 1))


@pytest.mark.anyio
async def test_torn_last_line_is_ignored_with_a_warning_and_cut(tmp_path: Path) -> None:
    from loguru import logger

    storage = FileStorage(f"file://{tmp_path / 'store'}")
    await storage.open()
    now = utcnow()
    run = Run(
        run_id="r1", workflow_name="w", status=RunStatus.RUNNING, input="{}",
        serializer="json", created_at=now, updated_at=now,
    )  # fmt: skip
    first = [NewEvent(EventType.STEP_COMPLETED, "1", {"result": "1"})]
    await storage.create_run(run, first)
    with open(tmp_path / "store" / "runs" / "r1.jsonl", "ab") as fh:
        fh.write(b'["step_completed","2",1.0,{"res')  # a crash mid-write
    warnings: list[str] = []
    handler = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    logger.enable("pyworkflow")
    try:
        assert [e.seq for e in await storage.get_events("r1")] == [1]
    finally:
        logger.remove(handler)
        logger.disable("pyworkflow")
    assert any("ignoring" in w for w in warnings)
    await storage.append_events("r1", 1, [NewEvent(EventType.STEP_COMPLETED, "2", {"result": 2})])
    events = await storage.get_events("r1")
    assert [(e.seq, e.payload["result"]) for e in events] == [(1, "1"), (2, 2)]


@pytest.mark.anyio
async def test_fsync_policy_from_url_and_bad_options(tmp_path: Path) -> None:
    from pyworkflow.errors import ConfigError

    assert FileStorage(f"file://{tmp_path}?fsync=never").fsync == "never"
    assert FileStorage(f"file://{tmp_path}").fsync == "always"
    with pytest.raises(ConfigError, match="fsync"):
        FileStorage(f"file://{tmp_path}?fsync=sometimes")
    with pytest.raises(ConfigError, match="colour"):
        FileStorage(f"file://{tmp_path}?colour=red")
