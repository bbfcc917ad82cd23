"""The JSON API over schedules and queues, and the queue fields of ``POST /api/runs``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyworkflow import RunStatus, get_result, get_run
from pyworkflow.server.openapi import openapi_document
from tests.server import workflows  # noqa: F401  (registers the workflows the API starts)
from tests.server.conftest import JSON, TOKEN, ServerFactory, wait_for, wait_status

NIGHTLY: dict[str, Any] = {
    "name": "nightly",
    "workflow": "server_tests.greet",
    "cron": "0 3 * * *",
    "timezone": "Europe/Paris",
    "args": ["ana"],
    "kwargs": {"punctuation": "?"},
}


def created_here(api: httpx.Client) -> list[str]:
    """The schedules created through the API (workers also create those declared in code)."""
    response = api.get("/api/schedules")
    assert response.status_code == 200
    return [s["name"] for s in response.json()["schedules"] if s["origin"] == "api"]


@pytest.fixture
def api(make_server: ServerFactory, tmp_path: Path) -> Iterator[httpx.Client]:
    """A client of a server on SQLite storage, with the queue ``emails`` (concurrency 1)."""
    base = make_server(
        storage=f"sqlite:///{tmp_path / 'pw.db'}",
        queues={"emails": {"concurrency": 1, "rate": "100/min"}},
    )
    with httpx.Client(base_url=base, timeout=10, headers=JSON) as client:
        yield client


def test_create_list_show_pause_resume_trigger_delete(api: httpx.Client) -> None:
    created = api.post("/api/schedules", json={**NIGHTLY, "overlap": "allow", "grace": 30})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "nightly" and body["workflow"] == "server_tests.greet"
    assert body["cron"] == "0 3 * * *" and body["timezone"] == "Europe/Paris"
    assert body["args"] == ["ana"] and body["kwargs"] == {"punctuation": "?"}
    assert body["overlap"] == "allow" and body["catchup"] == "latest"
    assert body["grace"] == 30.0 and body["catchup_window"] == 86400.0
    assert body["paused"] is False and body["origin"] == "api"
    assert body["next_fire_at"] is not None and body["last_run_id"] is None

    listed = api.get("/api/schedules")
    assert listed.status_code == 200
    assert created_here(api) == ["nightly"]
    assert api.get("/api/schedules/nightly").json() == body

    paused = api.post("/api/schedules/nightly/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert api.get("/api/schedules/nightly").json()["paused"] is True
    resumed = api.post("/api/schedules/nightly/resume", json={})
    assert resumed.status_code == 200 and resumed.json()["paused"] is False

    triggered = api.post("/api/schedules/nightly/trigger")
    assert triggered.status_code == 201, triggered.text
    run_id = triggered.json()["run_id"]
    assert get_result(run_id, timeout=10) == "hello ana?"  # the schedule's input
    assert api.get(f"/api/runs/{run_id}").json()["workflow"] == "server_tests.greet"

    deleted = api.delete("/api/schedules/nightly")
    assert deleted.status_code == 200 and deleted.json() == {"name": "nightly", "deleted": True}
    assert created_here(api) == []
    for method, path in [
        ("GET", "/api/schedules/nightly"),
        ("DELETE", "/api/schedules/nightly"),
        ("POST", "/api/schedules/nightly/pause"),
        ("POST", "/api/schedules/nightly/resume"),
        ("POST", "/api/schedules/nightly/trigger"),
    ]:
        gone = api.request(method, path)
        assert gone.status_code == 404, (method, path, gone.text)
        assert gone.json()["detail"] == "no schedule named 'nightly'"
    assert get_run(run_id).status == RunStatus.COMPLETED  # its runs stay


def test_a_taken_name_is_409_and_replace_replaces_it(api: httpx.Client) -> None:
    assert api.post("/api/schedules", json=NIGHTLY).status_code == 201
    again = api.post("/api/schedules", json={**NIGHTLY, "cron": "@hourly"})
    assert again.status_code == 409
    assert "nightly" in again.json()["detail"]
    assert api.get("/api/schedules/nightly").json()["cron"] == "0 3 * * *"
    replaced = api.post("/api/schedules", json={**NIGHTLY, "cron": "@hourly", "replace": True})
    assert replaced.status_code == 201 and replaced.json()["cron"] == "@hourly"


def test_interval_schedules_are_created_shown_and_listed(api: httpx.Client) -> None:
    body = {"name": "quarter", "workflow": "server_tests.greet", "args": ["bo"], "every": "15m"}
    created = api.post("/api/schedules", json=body)
    assert created.status_code == 201, created.text
    shown = created.json()
    assert shown["cron"] == "@every 15m" and shown["timezone"] == "UTC"
    assert shown["every"] == 900.0 and shown["anchor"] == "1970-01-01T00:00:00+00:00"
    minute = int(shown["next_fire_at"][14:16])
    assert minute % 15 == 0 and shown["next_fire_at"].endswith(":00+00:00")
    anchored = api.post(
        "/api/schedules",
        json={**body, "name": "anchored", "every": 90, "anchor": "2030-01-05T09:30:00+01:00"},
    )
    assert anchored.status_code == 201, anchored.text
    data = anchored.json()
    assert data["cron"] == "@every 1m30s from 2030-01-05T08:30:00+00:00"
    assert data["every"] == 90.0 and data["anchor"] == "2030-01-05T08:30:00+00:00"
    assert data["next_fire_at"] == "2030-01-05T08:30:00+00:00"  # nothing before the anchor
    assert api.get("/api/schedules/anchored").json() == data
    assert sorted(created_here(api)) == ["anchored", "quarter"]
    cron = api.post("/api/schedules", json=NIGHTLY).json()
    assert cron["every"] is None and cron["anchor"] is None


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"every": "15m"}, "not both"),
        ({"cron": None}, "cron: must be a string"),
        ({"anchor": "2030-01-05T09:30:00+00:00"}, "anchor applies to an interval"),
    ],
)
def test_cron_and_every_together_or_anchor_without_every_are_422(
    api: httpx.Client, change: dict[str, Any], said: str
) -> None:
    response = api.post("/api/schedules", json={**NIGHTLY, **change})
    assert response.status_code == 422, response.text
    assert said in response.text
    assert created_here(api) == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"every": 0}, "must be positive"),
        ({"every": -60}, "must not be negative"),
        ({"every": "500ms"}, "too small"),
        ({"every": 1.5}, "whole number of seconds"),
        ({"every": "soon"}, "not a duration"),
        ({"every": "1m", "anchor": "2030-01-05T09:30:00"}, "naive"),
        ({"every": "1m", "timezone": "Europe/Paris"}, "takes no time zone"),
    ],
)
def test_bad_intervals_are_422_naming_the_problem(
    api: httpx.Client, change: dict[str, Any], said: str
) -> None:
    body = {"name": "i", "workflow": "server_tests.greet", "args": ["x"], **change}
    response = api.post("/api/schedules", json=body)
    assert response.status_code == 422, response.text
    assert said in response.json()["detail"]
    assert created_here(api) == []


def test_unknown_workflow_is_404(api: httpx.Client) -> None:
    response = api.post("/api/schedules", json={**NIGHTLY, "workflow": "nope"})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    assert created_here(api) == []


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"cron": "0 3 * *"}, "has 4 field(s)"),
        ({"cron": "61 * * * *"}, "minute field"),
        ({"timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"overlap": "sometimes"}, "invalid overlap policy 'sometimes'"),
        ({"catchup": "never"}, "invalid catchup policy 'never'"),
        ({"grace": "soon"}, "invalid grace 'soon'"),
        ({"grace": -1}, "grace"),
        ({"catchup_window": 0}, "catchup_window must be a positive duration"),
        ({"queue": "bad queue"}, "invalid queue name 'bad queue'"),
        ({"name": "a/b"}, "invalid schedule name 'a/b'"),
        ({"name": " padded"}, "invalid schedule name"),
        ({"args": []}, "missing a required argument: 'name'"),
        ({"kwargs": {"shout": True}}, "shout"),
    ],
)
def test_bad_values_are_422_naming_the_problem(
    api: httpx.Client, change: dict[str, Any], said: str
) -> None:
    response = api.post("/api/schedules", json={**NIGHTLY, **change})
    assert response.status_code == 422, response.text
    assert said in response.json()["detail"]
    assert created_here(api) == []


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({**NIGHTLY, "args": "ana"}, ["args: must be an array"]),
        ({**NIGHTLY, "kwargs": []}, ["kwargs: must be an object"]),
        ({**NIGHTLY, "cron": 5}, ["cron: must be a string"]),
        ({**NIGHTLY, "timezone": None}, ["timezone: must be a string"]),
        ({**NIGHTLY, "paused": "true"}, ["paused: must be a boolean"]),
        ({**NIGHTLY, "paused": 1}, ["paused: must be a boolean"]),
        ({**NIGHTLY, "replace": 0}, ["replace: must be a boolean"]),
        ({**NIGHTLY, "grace": True}, ["grace: must be a duration"]),
        ({**NIGHTLY, "grace": [1]}, ["grace: must be a duration"]),
        ({**NIGHTLY, "queue": 3}, ["queue: must be a string or null"]),
        ({**NIGHTLY, "name": ""}, ["name: must be a non-empty string"]),
        ({**NIGHTLY, "name": 7}, ["name: must be a non-empty string"]),
        ({**NIGHTLY, "when": "now"}, ["when: unknown field"]),
        ({"name": "x"}, ["cron or every: required", "workflow: required"]),
        ({**NIGHTLY, "every": True}, ["every: must be a duration"]),
        ({**NIGHTLY, "every": ["1m"]}, ["every: must be a duration"]),
        ({**NIGHTLY, "anchor": 0}, ["anchor: must be an ISO 8601 date-time"]),
        ({**NIGHTLY, "anchor": "tomorrow"}, ["anchor: must be an ISO 8601 date-time"]),
    ],
)
def test_wrong_json_types_are_refused_not_coerced(
    api: httpx.Client, body: dict[str, Any], errors: list[str]
) -> None:
    response = api.post("/api/schedules", json=body)
    assert response.status_code == 422, response.text
    data = response.json()
    assert data["detail"] == "invalid request body"
    assert len(data["errors"]) == len(errors)
    for got, expected in zip(data["errors"], errors, strict=True):
        assert got.startswith(expected), (got, expected)


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"", 400),
        (b"{not json", 400),
        (b"[1, 2]", 422),
        (b'"nightly"', 422),
        (b'{"a": NaN}', 400),
    ],
)
def test_bodies_that_are_not_objects(api: httpx.Client, content: bytes, status: int) -> None:
    assert api.post("/api/schedules", content=content).status_code == status


def test_actions_take_no_body_and_json_only(api: httpx.Client) -> None:
    assert api.post("/api/schedules", json=NIGHTLY).status_code == 201
    extra = api.post("/api/schedules/nightly/pause", json={"paused": True})
    assert extra.status_code == 422 and extra.json()["errors"] == ["paused: unknown field"]
    assert api.post("/api/schedules/nightly/trigger", json=[1]).status_code == 422
    plain = api.post("/api/schedules/nightly/pause", headers={"content-type": "text/plain"})
    assert plain.status_code == 415
    assert api.get("/api/schedules/nightly").json()["paused"] is False
    assert api.put("/api/schedules/nightly").status_code == 405


def test_names_that_cannot_be_a_schedule_are_404(api: httpx.Client) -> None:
    long = "x" * 200
    for name in (long, "%20lead", "tab%09in"):
        response = api.get(f"/api/schedules/{name}")
        assert response.status_code == 404, (name, response.text)
        assert api.post(f"/api/schedules/{name}/trigger").status_code == 404
        assert api.delete(f"/api/schedules/{name}").status_code == 404


def test_the_api_token_guards_the_schedule_routes(make_server: ServerFactory) -> None:
    base = make_server(api_token=TOKEN)
    with httpx.Client(base_url=base, timeout=10, headers=JSON) as anonymous:
        for method, path in [
            ("GET", "/api/schedules"),
            ("POST", "/api/schedules"),
            ("GET", "/api/schedules/x"),
            ("DELETE", "/api/schedules/x"),
            ("POST", "/api/schedules/x/trigger"),
            ("GET", "/api/queues"),
        ]:
            response = anonymous.request(method, path, json=NIGHTLY if method == "POST" else None)
            assert response.status_code == 401, (method, path)
    auth = {**JSON, "authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, timeout=10, headers=auth) as client:
        assert client.post("/api/schedules", json=NIGHTLY).status_code == 201
        assert client.get("/api/queues").status_code == 200


def test_queues_show_waiting_active_admitted_and_limits(api: httpx.Client) -> None:
    empty = api.get("/api/queues")
    assert empty.status_code == 200
    # other test modules may declare workflows whose runs go to other queues
    assert [q for q in empty.json()["queues"] if q["queue"] in ("emails", "misc")] == [
        {
            "queue": "emails",
            "configured": True,
            "waiting": 0,
            "active": 0,
            "admitted": 0,
            "concurrency": 1,
            "worker_concurrency": None,
            "partition_concurrency": None,
            "rate": {"count": 100, "period": 60.0},
            "priority_aging": 60.0,
        }
    ]
    start = {"workflow": "server_tests.wait", "queue": "emails", "priority": 5}
    first = api.post("/api/runs", json={**start, "args": ["q:1"]})
    assert first.status_code == 201, first.text
    first_id = first.json()["run_id"]
    wait_status(first_id, RunStatus.SUSPENDED)  # admitted: it holds the queue's one place
    second = api.post("/api/runs", json={**start, "args": ["q:2"], "partition_key": "c-1"})
    assert second.status_code == 201
    assert get_run(second.json()["run_id"]).status == RunStatus.QUEUED
    # an unconfigured queue that holds runs is listed too
    other = api.post("/api/runs", json={"workflow": "server_tests.greet", "args": ["o"]})
    get_result(other.json()["run_id"], timeout=10)
    elsewhere = api.post(
        "/api/runs", json={"workflow": "server_tests.wait", "args": ["q:3"], "queue": "misc"}
    )
    wait_status(elsewhere.json()["run_id"], RunStatus.SUSPENDED)

    def shown() -> dict[str, Any]:
        return {q["queue"]: q for q in api.get("/api/queues").json()["queues"]}

    wait_for(lambda: shown()["emails"]["admitted"] == 1)
    queues = shown()
    assert list(queues) == sorted(queues) and {"emails", "misc"} <= set(queues)
    assert queues["emails"]["waiting"] == 1 and queues["emails"]["active"] == 1
    assert queues["misc"]["configured"] is False and queues["misc"]["active"] == 1
    assert queues["misc"]["concurrency"] is None and queues["misc"]["rate"] is None


def test_run_start_dedup_key_returns_the_waiting_run(api: httpx.Client) -> None:
    start = {"workflow": "server_tests.wait", "args": ["d:1"], "queue": "emails"}
    first = api.post("/api/runs", json={**start, "dedup_key": "order-1"}).json()["run_id"]
    wait_status(first, RunStatus.SUSPENDED)
    again = api.post("/api/runs", json={**start, "dedup_key": "order-1"})
    assert again.status_code == 201 and again.json()["run_id"] == first


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"queue": 1}, "queue: must be a string"),
        ({"queue": "bad queue"}, "invalid queue name 'bad queue'"),
        ({"priority": "high"}, "priority: must be an integer"),
        ({"priority": True}, "priority: must be an integer"),
        ({"priority": 1.5}, "priority: must be an integer"),
        ({"priority": 10**7}, "priority must be between"),
        ({"partition_key": 5}, "partition_key: must be a string"),
        ({"partition_key": ""}, "partition_key must be a non-empty string"),
        ({"dedup_key": ["k"]}, "dedup_key: must be a string"),
        ({"dedup_key": "k" * 257}, "dedup_key must be a non-empty string"),
    ],
)
def test_run_start_refuses_bad_queue_fields(
    api: httpx.Client, change: dict[str, Any], error: str
) -> None:
    response = api.post(
        "/api/runs", json={"workflow": "server_tests.greet", "args": ["x"], **change}
    )
    assert response.status_code == 422, response.text
    assert any(e.startswith(error) for e in response.json()["errors"]), response.json()


def test_every_route_is_in_the_openapi_document(api: httpx.Client) -> None:
    paths = openapi_document()["paths"]
    assert set(paths["/api/schedules"]) == {"get", "post"}
    assert set(paths["/api/schedules/{name}"]) == {"get", "delete"}
    for action in ("pause", "resume", "trigger"):
        assert set(paths[f"/api/schedules/{{name}}/{action}"]) == {"post"}
    assert set(paths["/api/queues"]) == {"get"}
    start = openapi_document()["components"]["schemas"]["StartRun"]["properties"]
    assert {"queue", "priority", "partition_key", "dedup_key"} <= set(start)
    served = api.get("/openapi.json").json()
    assert served["paths"].keys() == paths.keys()
    shown = api.post("/api/schedules", json=NIGHTLY).json()
    schema = served["components"]["schemas"]["Schedule"]
    assert set(shown) == set(schema["required"]) == set(schema["properties"])


def test_a_storage_without_schedules_answers_501(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyworkflow.runtime import get_runtime

    storage = get_runtime().storage

    async def unsupported(*args: Any) -> Any:
        raise NotImplementedError(f"{type(storage).__name__} does not support schedules")

    monkeypatch.setattr(storage, "list_schedules", unsupported)
    monkeypatch.setattr(storage, "queue_stats", unsupported)
    for path in ("/api/schedules", "/api/queues"):
        response = api.get(path)
        assert response.status_code == 501
        assert "does not support schedules" in response.json()["detail"]


# ----- fuzzing: no input makes the schedule routes answer 5xx -----

any_text = st.text(st.characters(exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3)
    ),
    max_leaves=6,
)
#: Each field: a plausible value, a value of its type, or anything at all.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["fuzz", "a/b", " x", ""]) | any_text | json_values,
    "workflow": st.sampled_from(["server_tests.greet", "nope"]) | json_values,
    "cron": st.sampled_from(["* * * * *", "0 0 31 2 *", "@daily", "*/0 * * * *", "61 * * * *"])
    | st.lists(st.sampled_from(["*", "0", "1-5", "*/7", "L", "W", "#", "99"]), max_size=7).map(
        " ".join
    )
    | json_values,
    "every": st.sampled_from(["15m", "0s", "500ms", "1.5s", "-1m", "1000000w", "1d"])
    | st.floats()
    | st.integers()
    | json_values,
    "anchor": st.sampled_from(
        [
            "2030-01-01T00:00:00+00:00",
            "2030-01-01T00:00:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "1999-01-01T00:00:00Z",
            "x",
        ]
    )
    | json_values,
    "timezone": st.sampled_from(["UTC", "Europe/Paris", "Mars/Base", "", "../etc"]) | json_values,
    "args": st.just(["ana"]) | json_values,
    "kwargs": st.just({}) | json_values,
    "overlap": st.sampled_from(["skip", "allow", "cancel_previous", "x"]) | json_values,
    "catchup": st.sampled_from(["none", "latest", "all", "x"]) | json_values,
    "grace": st.sampled_from(["1m", "0s", "1000000w", "-1s"]) | st.floats() | json_values,
    "catchup_window": st.sampled_from(["1d", "0", "1h30m"]) | st.integers() | json_values,
    "queue": st.sampled_from(["emails", "bad queue", None]) | json_values,
    "paused": st.booleans() | json_values,
    "replace": st.booleans() | json_values,
}


@st.composite
def schedule_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid body with up to three fields changed, one removed, or one unknown added."""
    body: dict[str, Any] = {
        "name": "fuzz",
        "workflow": "server_tests.greet",
        "cron": "* * * * *",
        "args": ["ana"],
    }
    if draw(st.integers(0, 2)) == 0:  # an interval schedule instead of a cron one
        del body["cron"]
        body["every"] = "1m"
    for field in draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=3)):
        body[field] = draw(FIELDS[field])
    if draw(st.integers(0, 9)) == 0:
        del body[draw(st.sampled_from(sorted(body)))]
    if draw(st.integers(0, 9)) == 0:
        body[draw(any_text)] = draw(json_values)
    return body


@pytest.mark.slow
def test_arbitrary_schedule_bodies_get_4xx_or_201_never_5xx(api: httpx.Client) -> None:
    created = 0

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=schedule_bodies())
    def post(body: dict[str, Any]) -> None:
        nonlocal created
        try:
            content = json.dumps(body, allow_nan=False).encode("utf-8", "surrogatepass")
        except ValueError:  # an infinite float: not JSON
            return
        response = api.post("/api/schedules", content=content)
        assert response.status_code in (201, 400, 404, 409, 422), (body, response.text)
        assert response.json()
        if response.status_code == 201:
            created += 1
            assert api.delete(f"/api/schedules/{quote(body['name'], safe='')}").status_code == 200

    post()
    assert created > 0  # some bodies were right and went through
    for name in ("fuzz", "x" * 129, "\ud800"):
        path = quote(name.encode("utf-8", "surrogatepass"), safe="")
        assert api.get(f"/api/schedules/{path}").status_code == 404
        assert api.post(f"/api/schedules/{path}/pause").status_code == 404
    assert api.get("/api/schedules").status_code == 200
