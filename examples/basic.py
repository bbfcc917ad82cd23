"""The seed README's basic example (functional API), with the sleep shortened."""

from __future__ import annotations

from pyworkflow import get_result, sleep, start, step, workflow


@step()
async def process_item(item_id: int):
    # This runs on any available worker
    return f"Processed {item_id}"


@workflow
async def my_workflow(item_id: int):
    result = await process_item(item_id)
    await sleep("1s")  # seed: sleep("5m") - automatically resumes after the delay
    return result


if __name__ == "__main__":
    # Start workflow - returns at once, the run continues in the worker
    run_id = start(my_workflow, item_id=123)
    print(get_result(run_id, timeout=60))
