"""The seed README's basic example with the OOP API (Workflow and Step classes)."""

from __future__ import annotations

import asyncio

from pyworkflow import Step, Workflow, aget_result


class GreetWorkflow(Workflow):
    name = "greet_user"

    async def run(self, name: str):
        message = await CreateGreetingStep()(name)
        await SendMessageStep()(message)
        return message


class CreateGreetingStep(Step):
    async def execute(self, name: str):
        return f"Hello, {name}!"


class SendMessageStep(Step):
    async def execute(self, message: str):
        print(message)
        return True


async def main() -> None:
    # Usage
    workflow = GreetWorkflow()
    run_id = await workflow.start("Alice")
    print(await aget_result(run_id, timeout=60))


if __name__ == "__main__":
    asyncio.run(main())
