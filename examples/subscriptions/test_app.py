"""Tests of the subscription app on PyWorkflow's test harness: a month of virtual time per test.

``workflow_env`` comes from PyWorkflow's pytest plugin (installed with the
package): a fresh WorkflowEnvironment per test, on memory storage with a
virtual clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from unittest.mock import AsyncMock

import pytest
from app import charge_card, send_email, subscription

from pyworkflow.models import EventType, RunStatus
from pyworkflow.testing import WorkflowEnvironment


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FlakyPaymentAPI:
    """A fake charge_card: the payment API is down for the first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __call__(self, customer: str, amount: int) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("payment API unreachable")
        return f"fake-payment-{customer}-{amount}"


@pytest.mark.anyio
async def test_a_customer_who_picks_a_plan_is_charged_after_four_failed_attempts(
    workflow_env: WorkflowEnvironment,
) -> None:
    emails = workflow_env.override_step(send_email, AsyncMock(return_value=None))
    charges = workflow_env.override_step(charge_card, FlakyPaymentAPI(failures=4))
    began = workflow_env.now()

    run_id = await workflow_env.start(subscription, "ana")
    # start() returns once the run is quiet: welcomed, and asleep for the trial.
    assert (await workflow_env.get_run(run_id)).status == RunStatus.SUSPENDED
    assert [c.args for c in emails.calls] == [("ana", "welcome! your free trial ends in 30d")]

    await workflow_env.advance("30d")  # the trial runs out; the run now waits on the hook
    assert workflow_env.now() - began == timedelta(days=30)
    assert "choose a plan at /hooks/plan:ana" in emails.calls[-1].args[1]

    await workflow_env.advance("1d")  # a day later the customer answers
    await workflow_env.resume_hook("plan:ana", {"plan": "pro"})
    result = await workflow_env.result(run_id)  # time skips through the four back-offs

    assert result["status"] == "active"
    assert result["payment"] == "fake-payment-ana-2900"
    assert [(c.args, c.attempt) for c in charges.calls] == [(("ana", 2900), n) for n in range(1, 6)]
    assert len({c.step_id for c in charges.calls}) == 1  # one step, five attempts

    events = await workflow_env.events(run_id)
    retrying = [e for e in events if e.type == EventType.STEP_RETRYING]
    assert [e.payload["attempt"] for e in retrying] == [1, 2, 3, 4]
    delays = [e.payload["delay"] for e in retrying]
    # exponential from retry_base="1m": 60, 120, 240, 480 s, each within the 10% jitter
    for n, delay in enumerate(delays):
        assert 0.9 * 60 * 2**n <= delay <= 1.1 * 60 * 2**n
    assert delays == sorted(delays)
    # each next attempt started exactly when its back-off was due, in virtual time
    charge = retrying[0].correlation_id  # the charge step's id
    started = [e for e in events if e.type == EventType.STEP_STARTED and e.correlation_id == charge]
    for retry, attempt in zip(retrying, started[1:], strict=True):
        assert attempt.timestamp == datetime.fromisoformat(retry.payload["due_at"])
        assert attempt.timestamp - retry.timestamp == timedelta(seconds=retry.payload["delay"])

    # pyworkflow.now() in the workflow read virtual time, and the clock moved by the back-offs
    trial_ended = datetime.fromisoformat(result["trial_ended_at"])
    charged = datetime.fromisoformat(result["charged_at"])
    assert trial_ended - began == timedelta(days=30)
    assert charged - trial_ended == timedelta(days=1) + timedelta(seconds=sum(delays))
    assert workflow_env.now() == charged


def test_a_customer_who_never_answers_is_let_go_after_three_days(
    workflow_env: WorkflowEnvironment,
) -> None:
    charges = workflow_env.override_step(charge_card, FlakyPaymentAPI(failures=0))
    emails = workflow_env.override_step("send_email", lambda customer, text: None)
    began = workflow_env.now()

    result = workflow_env.sync.run(subscription, "bob")  # 30 days + 3 days, skipped

    assert result["status"] == "ended"
    assert result["reason"] == "no answer"
    assert workflow_env.now() - began == timedelta(days=33)
    assert datetime.fromisoformat(result["trial_ended_at"]) - began == timedelta(days=30)
    assert charges.calls == []
    assert [c.args[1] for c in emails.calls][-1] == "your trial has ended; come back any time"


def test_a_customer_who_declines_is_not_charged(workflow_env: WorkflowEnvironment) -> None:
    env = workflow_env.sync
    charges = env.override_step(charge_card, FlakyPaymentAPI(failures=0))
    env.override_step(send_email, lambda customer, text: None)
    began = env.now()

    run_id = env.start(subscription, "cy")
    env.advance("30d")
    env.advance("2h")
    env.resume_hook("plan:cy", {"plan": None})
    result = env.result(run_id)

    assert result["status"] == "ended"
    assert result["reason"] == "declined"
    assert env.now() - began == timedelta(days=30, hours=2)  # no time skipped past the answer
    assert charges.calls == []
    hook_events = [e.type for e in env.events(run_id) if e.type.value.startswith("hook_")]
    assert hook_events == [EventType.HOOK_CREATED, EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED]
