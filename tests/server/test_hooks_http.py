"""``POST /hooks/{token}``: payment flow, schemas, 4xx answers that leave the log alone."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from pyworkflow import (
    EventType,
    RunStatus,
    get_events,
    get_result,
    get_run,
    start,
)
from pyworkflow.server import SIGNATURE_HEADER, sign
from tests.server import workflows as wf
from tests.server.conftest import (
    JSON,
    TOKEN,
    ServerFactory,
    hook_created,
    received,
    wait_for,
    wait_status,
)


@pytest.fixture(autouse=True)
def _clear_outbox() -> None:
    wf.outbox.clear()


def test_payment_flow_suspends_then_http_post_resumes(server: str, http: httpx.Client) -> None:
    run_id = start(wf.payment, "order-42")
    wait_status(run_id, RunStatus.SUSPENDED)
    info = get_run(run_id)
    assert info.wake_at is None  # nothing timed: only the hook can wake it
    [url] = wf.outbox
    assert url.startswith(f"{server}/hooks/")

    response = httpx.post(url, json={"status": "paid", "amount": 1999})
    assert response.status_code == 202
    assert response.json() == {"run_id": run_id}

    result = get_result(run_id, timeout=10)
    assert result == {"order": "order-42", "payment": {"status": "paid", "amount": 1999}}
    # the hook went away with the run
    again = httpx.post(url, json={"status": "paid twice"})
    assert again.status_code == 404
    assert len(received(run_id)) == 1


def test_schema_rejects_wrong_payload_and_structures_right_one(http: httpx.Client) -> None:
    run_id = start(wf.typed_payment, "pay:1")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)

    wrongs = [{"amount": "lots", "currency": "EUR"}, {"amount": 5}, [1, 2], "x", None]
    for wrong in wrongs:
        response = http.post("/hooks/pay:1", content=json.dumps(wrong).encode())
        assert response.status_code == 422, (wrong, response.text)
        body = response.json()
        assert body["errors"], body
        assert "Payment" in body["detail"]
    bad = http.post("/hooks/pay:1", json={"amount": "lots", "currency": "EUR"}).json()
    assert any("amount" in error for error in bad["errors"])
    missing = http.post("/hooks/pay:1", json={"amount": 5}).json()
    assert any("currency" in error for error in missing["errors"])
    assert http.post("/hooks/pay:1", content=b"").status_code == 422  # empty body is null
    assert get_events(run_id) == before
    assert get_run(run_id).status == RunStatus.SUSPENDED

    ok = http.post("/hooks/pay:1", json={"amount": 5, "currency": "EUR"})
    assert ok.status_code == 202
    result = get_result(run_id, timeout=10)
    assert result == {"is_payment": True, "payment": wf.Payment(amount=5, currency="EUR")}


def test_unknown_and_disposed_tokens_are_404(http: httpx.Client) -> None:
    assert http.post("/hooks/nobody-home", json={}).status_code == 404
    assert http.post("/hooks/", json={}).status_code == 404
    assert http.post("/hooks/a/b%2Fc?x=1", json={}).status_code == 404

    run_id = start(wf.short_lived, "tmp")
    wait_status(run_id, RunStatus.SUSPENDED)
    assert http.post("/hooks/tmp", json="first").status_code == 202
    # the `async with` block exits: `tmp` is disposed, the run waits on `tmp:later`
    wait_for(lambda: any(e.type == EventType.HOOK_DISPOSED for e in get_events(run_id)))
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    response = http.post("/hooks/tmp", json="too late")
    assert response.status_code == 404
    assert response.json()["detail"]
    assert get_events(run_id) == before

    assert http.post("/hooks/tmp:later", json="second").status_code == 202
    assert get_result(run_id, timeout=10) == ["first", "second"]


def test_oversize_body_is_413_and_not_recorded(make_server: ServerFactory) -> None:
    base = make_server(max_body_bytes=1024)
    run_id = start(wf.wait_forever, "big")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    big = b'"' + b"x" * 2000 + b'"'
    with httpx.Client(base_url=base, timeout=10, headers=JSON) as http:
        announced = http.post("/hooks/big", content=big)
        assert announced.status_code == 413
        assert "1024" in announced.json()["detail"]

        def chunks() -> object:
            for start_at in range(0, len(big), 100):
                yield big[start_at : start_at + 100]

        streamed = http.post("/hooks/big", content=chunks())  # chunked: no Content-Length
        assert streamed.status_code == 413
        assert get_events(run_id) == before
        assert http.post("/hooks/big", json="small").status_code == 202
    assert get_result(run_id, timeout=10) == "small"


def test_payload_too_large_error_from_core_is_413(make_server: ServerFactory) -> None:
    base = make_server(max_payload_bytes=100)
    run_id = start(wf.wait_forever, "core-limit")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    with httpx.Client(base_url=base, timeout=10) as http:
        response = http.post("/hooks/core-limit", json="y" * 500)
    assert response.status_code == 413
    assert get_events(run_id) == before


def test_signature_required_for_hooks_with_a_secret(http: httpx.Client) -> None:
    run_id = start(wf.signed, "signed", 2)
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    body = b'{"ok": true}'
    assert http.post("/hooks/signed", content=body).status_code == 401
    now = int(time.time())
    wrongs = (
        sign("another-secret-0123456789", body),
        "sha256=" + sign(wf.SECRET, body).split("v1=")[1],  # the old, replayable scheme
        "nonsense",
        f"t={now}",
        f"t={now},v1=",
        f"t=abc,v1={'0' * 64}",
        sign(wf.SECRET, body + b" "),
        sign(wf.SECRET, body, timestamp=now - 301),  # stale
        sign(wf.SECRET, body, timestamp=now + 900),  # from the future
    )
    for wrong in wrongs:
        response = http.post("/hooks/signed", content=body, headers={SIGNATURE_HEADER: wrong})
        assert response.status_code == 401, wrong
        assert response.json()["detail"]
    assert get_events(run_id) == before

    good = sign(wf.SECRET, body)
    assert good.startswith(f"t={now}") or good.startswith("t=")
    response = http.post("/hooks/signed", content=body, headers={SIGNATURE_HEADER: good})
    assert response.status_code == 202
    body2 = b'{"ok": 2}'
    # several v1 signatures (a sender rotating secrets): one matching is enough
    rotated = sign("the-old-secret-0123456789", body2) + ",v1=" + sign(wf.SECRET, body2)[-64:]
    response = http.post("/hooks/signed", content=body2, headers={SIGNATURE_HEADER: rotated})
    assert response.status_code == 202
    assert get_result(run_id, timeout=10) == [{"ok": True}, {"ok": 2}]


def test_invalid_json_is_400_and_not_recorded(http: httpx.Client) -> None:
    run_id = start(wf.wait_forever, "json")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    for body in (b"{", b"\xff\xfe", b"NaN", b"[Infinity]", b"[" * 100 + b"]" * 100):
        response = http.post("/hooks/json", content=body)
        assert response.status_code == 400, body
        assert response.json()["detail"]
    assert http.post("/hooks/json", content=b"[" * 50_000).status_code == 400
    assert get_events(run_id) == before
    assert hook_created(run_id)


def test_api_token_guards_api_but_not_hooks(make_server: ServerFactory) -> None:
    base = make_server(api_token=TOKEN)
    run_id = start(wf.wait_forever, "guarded")
    wait_status(run_id, RunStatus.SUSPENDED)
    before = get_events(run_id)
    with httpx.Client(base_url=base, timeout=10) as http:
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": TOKEN}):
            listed = http.get("/api/runs", headers=headers)
            assert listed.status_code == 401, headers
            assert listed.headers["www-authenticate"] == "Bearer"
            assert http.get(f"/api/runs/{run_id}", headers=headers).status_code == 401
            assert http.get(f"/api/runs/{run_id}/events", headers=headers).status_code == 401
            cancel = http.post(f"/api/runs/{run_id}/cancel", headers={**JSON, **headers})
            assert cancel.status_code == 401
            body = {"workflow": "server_tests.greet", "args": ["x"]}
            started = http.post("/api/runs", json=body, headers=headers)
            assert started.status_code == 401
        assert get_events(run_id) == before
        assert get_run(run_id).status == RunStatus.SUSPENDED

        auth = {"authorization": f"Bearer {TOKEN}"}
        assert http.get("/api/runs", headers=auth).status_code == 200
        assert http.get(f"/api/runs/{run_id}", headers=auth).json()["status"] == "suspended"
        spec = http.get("/openapi.json").json()
        assert spec["security"] == [{"bearer": []}]
        # hooks stay reachable by their token alone
        assert http.post("/hooks/guarded", json={"go": 1}).status_code == 202
    assert get_result(run_id, timeout=10) == {"go": 1}
