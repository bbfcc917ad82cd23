"""Workflows the Ray tests start; workers and Ray worker processes import this module.

The first ones are the seed README's examples with shortened sleeps. Step
bodies that must be counted append a line to a file the test passes in:
name, attempt, pid and the Ray node id of the process that ran them.
Workflow and step names carry a ``ray_`` prefix: names are global in a process,
and a whole-suite run imports the Celery tests' module of the same examples.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import anyio

from pyworkflow import (
    FatalError,
    RetryableError,
    Step,
    Workflow,
    get_step_context,
    sleep,
    step,
    workflow,
    workflow_logger,
)


def node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    try:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # not in a Ray worker
        pass
    return ""


def mark(path: str, name: str) -> None:
    """Record one execution of a step body: name, attempt, pid, node id."""
    attempt = get_step_context().attempt
    with open(path, "a") as fh:
        fh.write(f"{name} {attempt} {os.getpid()} {node_id() or '-'}\n")


def lines(path: str | Path) -> list[list[str]]:
    try:
        return [line.split() for line in Path(path).read_text().splitlines()]
    except FileNotFoundError:
        return []


def executions(path: str | Path) -> list[str]:
    return [fields[0] for fields in lines(path)]


# ----- seed: basic example -----


@step(name="ray_process_item")
async def process_item(item_id: int) -> str:
    return f"Processed {item_id}"


@workflow(name="ray_my_workflow")
async def my_workflow(item_id: int, pause: str = "5m") -> str:
    result = await process_item(item_id)
    await sleep(pause)  # the seed sleeps 5 minutes; tests pass a shorter pause
    return result


# ----- seed: basic example, OOP API -----


class GreetWorkflow(Workflow):
    name = "ray_greet_user"

    async def run(self, name: str) -> str:
        message = await CreateGreetingStep()(name)
        await SendMessageStep()(message)
        return message


class CreateGreetingStep(Step):
    name = "ray_create_greeting"

    async def execute(self, name: str) -> str:
        return f"Hello, {name}!"


class SendMessageStep(Step):
    name = "ray_send_message"

    async def execute(self, message: str) -> bool:
        return True


# ----- seed: sleep and delays (onboarding) -----


@step(name="ray_send_welcome_email")
async def send_welcome_email(user_id: str) -> bool:
    return True


@step(name="ray_send_tips_email")
async def send_tips_email(user_id: str) -> bool:
    return True


@step(name="ray_send_feedback_request")
async def send_feedback_request(user_id: str) -> bool:
    return True


@workflow(name="ray_onboarding_flow")
async def onboarding_flow(user_id: str, first: str = "1d", second: str = "3d") -> str:
    await send_welcome_email(user_id)
    await sleep(first)  # the seed sleeps 1 day
    await send_tips_email(user_id)
    await sleep(second)  # the seed sleeps 3 more days
    await send_feedback_request(user_id)
    return f"onboarded {user_id}"


# ----- seed: error handling and retries -----


@step(name="ray_call_external_api", max_retries=5, retry_delay="exponential", retry_base="0.2s")
async def call_external_api(url: str, log: str) -> dict[str, str]:
    mark(log, "call_external_api")
    attempt = get_step_context().attempt
    if url.endswith("/missing"):
        raise FatalError("Resource not found")  # Don't retry
    if attempt == 1:
        raise RetryableError("Server error", retry_after="0.5s")  # Retry
    if attempt == 2:
        raise RetryableError("Network error")  # Retry with exponential backoff
    return {"url": url, "attempt": str(attempt)}


@workflow(name="ray_fetch_flow")
async def fetch_flow(url: str, log: str) -> dict[str, str]:
    return await call_external_api(url, log)


# ----- parallel steps in two Ray worker processes -----


@step(name="ray_meet", max_retries=0)
async def meet(label: str, other: str, folder: str) -> list[str]:
    """Mark this step started, then wait (up to 60 s) until ``other`` has started too.

    Two of these under ``gather`` finish only if they run at the same time; run
    one after the other, the first would wait for a step that cannot start, and
    fail. Returns the label, the pid and the Ray node id of the process.
    """
    Path(folder, label).write_text(str(os.getpid()))
    with anyio.fail_after(60):
        while not Path(folder, other).exists():
            await anyio.sleep(0.02)
    return [label, str(os.getpid()), node_id()]


@workflow(name="ray_parallel_flow")
async def parallel_flow(folder: str) -> list[list[str]]:
    return list(await asyncio.gather(meet("a", "b", folder), meet("b", "a", folder)))


# ----- crash recovery -----


@step(name="ray_quick")
async def quick(label: str, log: str) -> str:
    mark(log, label)
    return label


@step(name="ray_slow_record")
def slow_record(log: str, pid_file: str) -> str:
    """Write this process's pid for the test to kill; the second execution is quick."""
    mark(log, "slow")
    if executions(log).count("slow") == 1:
        Path(pid_file).write_text(str(os.getpid()))
        time.sleep(30)
    return "slow done"


@step(name="ray_slow_record_dispatched", resources={"num_cpus": 1})
def slow_record_dispatched(log: str, pid_file: str) -> str:
    """``slow_record`` declaring resources: dispatched, a Ray task that records itself."""
    result: str = slow_record.fn(log, pid_file)
    return result


@workflow(name="ray_crash_flow")
async def crash_flow(log: str, pid_file: str) -> list[str]:
    """Lone steps without resources: run in the activation's Ray worker process."""
    first = await quick("first", log)
    middle = await slow_record(log, pid_file)
    last = await quick("last", log)
    return [first, middle, last]


@workflow(name="ray_crash_flow_dispatched")
async def crash_flow_dispatched(log: str, pid_file: str) -> list[str]:
    """The same with a middle step that declares resources: dispatched."""
    first = await quick("first", log)
    middle = await slow_record_dispatched(log, pid_file)
    last = await quick("last", log)
    return [first, middle, last]


# ----- placement by custom resource -----


@step(name="ray_on_special", resources={"special": 1})
async def on_special(log: str) -> str:
    mark(log, "special")
    return node_id()


@step(name="ray_anywhere")
async def anywhere(log: str) -> str:
    mark(log, "anywhere")
    return node_id()


@workflow(name="ray_placement_flow")
async def placement_flow(log: str) -> list[str]:
    nodes = [await on_special(log) for _ in range(3)]
    return [*nodes, await anywhere(log)]


# ----- timers -----


@workflow(name="ray_nap_flow")
async def nap_flow(log: str, pause: str = "3s") -> str:
    await quick("before", log)
    await sleep(pause)
    await quick("after", log)
    return "rested"


# ----- a resource no node has -----


@step(name="ray_on_a_tpu", resources={"tpu": 1})
async def on_a_tpu(log: str) -> str:
    mark(log, "tpu")
    return node_id()


@workflow(name="ray_tpu_flow")
async def tpu_flow(log: str) -> list[str]:
    """A step no node can take, dispatched together with one any node can."""
    return list(await asyncio.gather(on_a_tpu(log), anywhere(log)))


# ----- a step timeout cancels the Ray task -----


@step(name="ray_stubborn", timeout="2s", max_retries=0)
def stubborn(log: str) -> str:
    """Sleeps far past its timeout; records the interruption Ray's cancel raises."""
    mark(log, "stubborn")
    try:
        for _ in range(600):  # Ray interrupts between bytecodes, not inside one sleep
            time.sleep(0.1)
    except KeyboardInterrupt:  # ray.cancel() of a running task
        mark(log, "interrupted")
        raise
    return "finished"


@workflow(name="ray_timeout_flow")
async def timeout_flow(log: str) -> str:
    try:
        return await stubborn(log)
    except Exception as exc:
        return f"gave up: {type(exc).__name__}"


# ----- the trace context travels with a step's Ray task -----


@step(name="ray_trace_probe")
def trace_probe() -> list[str]:
    """The current OpenTelemetry span context where the body runs (a Ray worker process)."""
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return [format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), str(os.getpid())]


@workflow(name="ray_trace_flow")
async def trace_flow() -> list[str]:
    return await trace_probe()


@step(name="ray_trace_probe_dispatched", resources={"num_cpus": 1})
def trace_probe_dispatched() -> list[str]:
    """``trace_probe`` declaring resources: dispatched through the step protocol."""
    return trace_probe.__wrapped__()  # type: ignore[attr-defined, no-any-return]


@workflow(name="ray_trace_dispatched_flow")
async def trace_dispatched_flow() -> list[str]:
    return await trace_probe_dispatched()


# ----- a workflow timeout ends a run sleeping on Ray -----


@workflow(name="ray_timed_sleeper", timeout="8s")
async def timed_sleeper() -> str:
    """Sleeps far past its workflow timeout."""
    await sleep("10m")
    return "woke"


# ----- a cancelled activation stops its step -----


@step(name="ray_long_haul", max_retries=0)
def long_haul(log: str) -> str:
    """Works for a minute; records the interruption a cancelled activation raises."""
    mark(log, "haul")
    try:
        for _ in range(600):
            time.sleep(0.1)
    except KeyboardInterrupt:
        mark(log, "interrupted")
        raise
    return "hauled"


@workflow(name="ray_haul_flow")
async def haul_flow(log: str) -> str:
    return await long_haul(log)


# ----- logs of workflow code, from the Ray worker that ran it -----


@workflow(name="ray_logging_flow")
async def logging_flow(marker: str) -> str:
    workflow_logger.warning("workflow says {}", marker)
    return marker
