"""Quick start: a durable workflow with two steps and a sleep, on the embedded default.

Run it with ``python examples/quickstart.py``: it needs no server. Runs are
kept in ``.pyworkflow/pyworkflow.db`` (SQLite) in the current directory.
"""

from __future__ import annotations

from pyworkflow import get_result, sleep, start, step, workflow


@step()
async def process_item(item_id: int) -> str:
    return f"Processed {item_id}"


@step()
async def notify(message: str) -> bool:
    print(f"notify: {message}")
    return True


@workflow
async def my_workflow(item_id: int) -> str:
    result = await process_item(item_id)
    await sleep("2s")  # durable: the run suspends and the worker resumes it on time
    await notify(result)
    return result


if __name__ == "__main__":
    run_id = start(my_workflow, item_id=123)
    print(f"started run {run_id}")
    print(f"result: {get_result(run_id, timeout=60)}")
