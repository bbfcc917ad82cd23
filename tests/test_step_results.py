"""A step result the serializer cannot write fails the step at once (issue 12, finding 3).

Like an oversized result (``PayloadTooLargeError``), an unserializable one is
not a transient failure: running the body again returns the same kind of
value. The step fails with ``SerializationError`` naming the step and the
value's type, with no ``step_retrying`` and one ``step_started``.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from pyworkflow import (
    EventType,
    RunStatus,
    SerializationError,
    get_events,
    get_result,
    get_run,
    runtime,
    start,
    step,
    workflow,
)

from .conftest import FAST
from .dispatching import dispatching_executor  # noqa: F401  # fixture

#: Sockets opened by the steps below, closed after each test.
_opened: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


@step(max_retries=3, retry_delay="fixed")
async def open_socket() -> socket.socket:
    sock = socket.socket()
    _opened.append(sock)
    return sock


@step(max_retries=3, retry_delay="fixed")
def open_socket_in_a_list() -> list[Any]:
    sock = socket.socket()
    _opened.append(sock)
    return [1, sock]


@workflow
async def returns_a_socket() -> str:
    await open_socket()
    return "unreachable"


@workflow
async def catches_the_error() -> str:
    try:
        await open_socket_in_a_list()
    except SerializationError as exc:
        return f"caught: {exc}"
    return "unreachable"


def _counts(run_id: str) -> Counter[EventType]:
    return Counter(e.type for e in get_events(run_id))


@pytest.mark.parametrize("executor", ["local", "inprocess-dispatch"])
def test_unserializable_result_fails_the_step_at_once(
    executor: str,
    dispatching_executor: None,  # noqa: F811
) -> None:
    runtime.configure(storage="memory://", executor=executor, **FAST)
    run_id = start(returns_a_socket)
    with pytest.raises(SerializationError, match="step 'open_socket'"):
        get_result(run_id, timeout=30)
    assert get_run(run_id).status == RunStatus.FAILED
    counts = _counts(run_id)
    assert counts[EventType.STEP_STARTED] == 1
    assert counts[EventType.STEP_RETRYING] == 0
    (failed,) = [e for e in get_events(run_id) if e.type == EventType.STEP_FAILED]
    message = str(failed.payload["error_message"])
    assert message.startswith("SerializationError: ")
    assert "step 'open_socket'" in message
    assert "socket.socket" in message
    assert "open_socket" in (get_run(run_id).error_message or "")


def test_the_workflow_can_catch_it() -> None:
    runtime.configure(storage="memory://", **FAST)
    run_id = start(catches_the_error)
    result = str(get_result(run_id, timeout=30))
    assert result.startswith("caught: result of step 'open_socket_in_a_list'")
    assert "list" in result and "socket.socket" in result
    assert _counts(run_id)[EventType.STEP_STARTED] == 1
