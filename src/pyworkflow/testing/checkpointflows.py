"""The step-checkpoint workload that worker processes import by module name.

:func:`pyworkflow.testing.checkpointchecks.checkpoint_across_kill` starts
``pyworkflow worker`` processes with ``modules = ["pyworkflow.testing.checkpointflows"]``.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from pyworkflow.context import get_step_context
from pyworkflow.step import step
from pyworkflow.workflow import workflow

__all__ = ["batch_items", "checkpointed_batch"]


@step(name="checkpoint_batch_items", max_retries=5, retry_delay=0.1)
async def batch_items(directory: str, total: int, stop_at: int) -> int:
    """Process items ``0..total-1``, checkpointing the next item's position after each.

    Each attempt appends the items it processes to ``attempt-<n>.txt`` in
    ``directory`` and writes where it resumed to ``resumed-<n>.txt``. At item
    ``stop_at``, unless a file ``killed`` exists, it writes ``stopped`` (the item)
    and waits there, to be killed, or until a file ``resume`` appears.
    """
    ctx = get_step_context()
    folder = Path(directory)
    last = ctx.last_checkpoint
    begin = 0 if last is None else int(last)
    (folder / f"resumed-{ctx.attempt}.txt").write_text(str(begin))
    with open(folder / f"attempt-{ctx.attempt}.txt", "a") as out:
        for item in range(begin, total):
            if item == stop_at and not (folder / "killed").exists():
                (folder / "stopped").write_text(str(item))
                while not (folder / "resume").exists():  # the test kills or pauses it now
                    await anyio.sleep(0.05)
            out.write(f"{item}\n")
            out.flush()
            await ctx.checkpoint(item + 1)
    return total


@workflow(name="checkpointed_batch")
async def checkpointed_batch(directory: str, total: int, stop_at: int) -> int:
    """One long step over ``total`` items that resumes from its checkpoint."""
    return await batch_items(directory, total, stop_at)
