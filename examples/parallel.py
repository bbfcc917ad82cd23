"""The seed README's sequential and parallel example: asyncio.gather over steps."""

from __future__ import annotations

from pyworkflow import get_result, start, step, workflow


@step()
async def validate_order(order_id: str):
    return {"id": order_id, "total": 42.5, "items": ["book", "pen"]}


@step()
async def process_payment(total: float):
    return {"charged": total}


@step()
async def reserve_inventory(items: list[str]):
    return {"reserved": items}


@step()
async def create_shipment(order_id: str):
    return {"order": order_id, "status": "shipped"}


@workflow
async def process_order(order_id: str):
    # Sequential
    order = await validate_order(order_id)

    # Parallel execution
    import asyncio

    payment, inventory = await asyncio.gather(
        process_payment(order["total"]), reserve_inventory(order["items"])
    )

    # Continue sequential
    shipment = await create_shipment(order_id)
    return shipment


if __name__ == "__main__":
    run_id = start(process_order, "order-1")
    print(get_result(run_id, timeout=60))
