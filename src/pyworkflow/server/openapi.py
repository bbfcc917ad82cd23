"""The OpenAPI 3.0 document served at ``/openapi.json``, written by hand."""

from __future__ import annotations

import copy
from typing import Any

from pyworkflow.models import CatchupPolicy, EventType, OverlapPolicy, RunStatus

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
_NULLABLE_LIMIT = {"type": "integer", "minimum": 1, "nullable": True}
_DURATION = {
    "oneOf": [{"type": "string"}, {"type": "number", "minimum": 0}],
    "description": "A duration: text such as '1m', '1h30m', '1d', or a number of seconds.",
}
_SCHEDULE_FIELDS = (
    "name",
    "workflow",
    "cron",
    "timezone",
    "every",
    "anchor",
    "args",
    "kwargs",
    "overlap",
    "catchup",
    "grace",
    "catchup_window",
    "queue",
    "paused",
    "origin",
    "next_fire_at",
    "last_fire_at",
    "last_run_id",
    "created_at",
    "updated_at",
)

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"description": "What went wrong."},
            "errors": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Field errors, for payloads that do not fit a hook's schema.",
            },
        },
    },
    "Run": {
        "type": "object",
        "required": [
            "run_id",
            "workflow",
            "version",
            "status",
            "created_at",
            "updated_at",
            "completed_at",
            "result",
            "error_message",
            "wake_at",
            "events",
            "parent_run_id",
            "continued_from",
            "continued_to",
            "queue",
            "priority",
            "partition_key",
            "admitted_at",
        ],
        "properties": {
            "run_id": {"type": "string"},
            "workflow": {"type": "string"},
            "version": {
                "type": "string",
                "nullable": True,
                "description": "The workflow's version when the run started, if it has one.",
            },
            "status": {"type": "string", "enum": [s.value for s in RunStatus]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "completed_at": _NULLABLE_TIME,
            "result": {
                "nullable": True,
                "description": "The workflow's return value as JSON (else its str()).",
            },
            "error_message": {"type": "string", "nullable": True},
            "wake_at": _NULLABLE_TIME,
            "parent_run_id": {
                "type": "string",
                "nullable": True,
                "description": "The run that started this one as its child, if any.",
            },
            "events": {
                "type": "integer",
                "minimum": 0,
                "description": "How many events the run's log holds (the seq of the last one).",
            },
            "continued_from": {
                "type": "string",
                "nullable": True,
                "description": "The run this one continues (started by its continue_as_new).",
            },
            "continued_to": {
                "type": "string",
                "nullable": True,
                "description": "The run this one continued as (status 'continued').",
            },
            "queue": {
                "type": "string",
                "nullable": True,
                "description": "The queue the run was started in (docs/queues.md), if any.",
            },
            "priority": {"type": "integer", "description": "Its priority in its queue."},
            "partition_key": {
                "type": "string",
                "nullable": True,
                "description": "The partition whose own limit it counts against.",
            },
            "admitted_at": {
                **_NULLABLE_TIME,
                "description": "When a worker admitted it from its queue (null: never queued, "
                "or still waiting).",
            },
            "unknown_workflow": {
                "type": "array",
                "items": _ref("UnknownWorkflow"),
                "description": "Only in GET /api/runs/{run_id}: the workers that met this run "
                "and do not know its workflow, since the run last ran (empty when none). The "
                "run waits for a worker that knows it.",
            },
            "children": {
                "type": "array",
                "items": _ref("Child"),
                "description": "Only in GET /api/runs/{run_id}, for a run that started child "
                "runs: its newest 500 children (all of them: GET /api/runs?parent=).",
            },
        },
    },
    "Child": {
        "type": "object",
        "required": ["run_id", "workflow", "status", "policy"],
        "properties": {
            "run_id": {"type": "string"},
            "workflow": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in RunStatus]},
            "policy": {"type": "string", "enum": ["request_cancel", "terminate", "abandon"]},
        },
    },
    "UnknownWorkflow": {
        "type": "object",
        "required": ["workflow", "worker", "host", "pid", "since"],
        "properties": {
            "workflow": {"type": "string", "description": "The workflow name it does not know."},
            "worker": {"type": "string", "description": "The worker's id (its lease owner)."},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "since": {
                "type": "string",
                "format": "date-time",
                "description": "When this worker first met the run without knowing it.",
            },
        },
    },
    "RunPage": {
        "type": "object",
        "required": ["runs", "next_cursor"],
        "properties": {
            "runs": {"type": "array", "items": _ref("Run")},
            "next_cursor": {
                "type": "string",
                "nullable": True,
                "description": "Pass as `cursor` for the next page; null on the last page.",
            },
        },
    },
    "Event": {
        "type": "object",
        "required": ["run_id", "seq", "type", "correlation_id", "timestamp", "payload"],
        "properties": {
            "run_id": {"type": "string"},
            "seq": {"type": "integer", "minimum": 1},
            "type": {"type": "string", "enum": [t.value for t in EventType]},
            "correlation_id": {"type": "string", "nullable": True},
            "timestamp": {"type": "string", "format": "date-time"},
            "payload": {
                "type": "object",
                "description": "The event's data; user values in it are serialized strings.",
            },
        },
    },
    "EventList": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": _ref("Event")}},
    },
    "StartRun": {
        "type": "object",
        "required": ["workflow"],
        "additionalProperties": False,
        "properties": {
            "workflow": {
                "type": "string",
                "minLength": 1,
                "description": "Name of a workflow registered in the server process.",
            },
            "args": {"type": "array", "items": {}, "default": []},
            "kwargs": {"type": "object", "default": {}},
            "idempotency_key": {
                "type": "string",
                "description": "Starting again with the same key returns the first run's id.",
            },
            "queue": {
                "type": "string",
                "nullable": True,
                "description": "The queue it goes to (default: the workflow's own); see "
                "docs/queues.md.",
            },
            "priority": {
                "type": "integer",
                "minimum": -1000000,
                "maximum": 1000000,
                "default": 0,
                "description": "Higher is admitted sooner from its queue.",
            },
            "partition_key": {
                "type": "string",
                "nullable": True,
                "minLength": 1,
                "maxLength": 256,
                "description": "The partition it counts against (partition_concurrency).",
            },
            "dedup_key": {
                "type": "string",
                "nullable": True,
                "minLength": 1,
                "maxLength": 256,
                "description": "While a run of the queue with this key is queued or running, "
                "starting again returns that run's id.",
            },
        },
    },
    "Schedule": {
        "type": "object",
        "required": list(_SCHEDULE_FIELDS),
        "properties": {
            "name": {"type": "string"},
            "workflow": {"type": "string"},
            "cron": {
                "type": "string",
                "description": "The cron expression, or an interval's text: '@every 15m "
                "[from <anchor>]'.",
            },
            "timezone": {"type": "string"},
            "every": {
                "type": "number",
                "nullable": True,
                "description": "An interval schedule's interval, in seconds (null: a cron one).",
            },
            "anchor": {
                **_NULLABLE_TIME,
                "description": "An interval schedule's first tick (null: a cron one).",
            },
            "args": {
                "type": "array",
                "items": {},
                "nullable": True,
                "description": "Arguments of every run it starts (null: not decodable here).",
            },
            "kwargs": {"type": "object", "nullable": True},
            "overlap": {"type": "string", "enum": [p.value for p in OverlapPolicy]},
            "catchup": {"type": "string", "enum": [p.value for p in CatchupPolicy]},
            "grace": {"type": "number", "description": "Seconds."},
            "catchup_window": {"type": "number", "description": "Seconds."},
            "queue": {"type": "string", "nullable": True},
            "paused": {"type": "boolean"},
            "origin": {
                "type": "string",
                "description": "'code' (declared on a workflow) or 'api'.",
            },
            "next_fire_at": {**_NULLABLE_TIME, "description": "The next tick not yet fired."},
            "last_fire_at": _NULLABLE_TIME,
            "last_run_id": {"type": "string", "nullable": True},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "ScheduleList": {
        "type": "object",
        "required": ["schedules"],
        "properties": {"schedules": {"type": "array", "items": _ref("Schedule")}},
    },
    "CreateSchedule": {
        "type": "object",
        "required": ["name", "workflow"],
        "additionalProperties": False,
        "description": "Give exactly one of `cron` and `every`.",
        "properties": {
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "description": "Printable, no '/', no leading or trailing space.",
            },
            "workflow": {
                "type": "string",
                "minLength": 1,
                "description": "Name of a workflow registered in the server process.",
            },
            "cron": {
                "type": "string",
                "description": "5 fields, 6 with seconds first, or @hourly, @daily... "
                "(or give `every`).",
            },
            "every": {
                **_DURATION,
                "description": "An interval instead of a cron: '15m', '1h30m' or seconds "
                "(whole seconds, at least 1).",
            },
            "anchor": {
                "type": "string",
                "format": "date-time",
                "description": "With `every`: the first tick, with an offset; default the "
                "Unix epoch.",
            },
            "timezone": {"type": "string", "default": "UTC", "description": "An IANA name."},
            "args": {"type": "array", "items": {}, "default": []},
            "kwargs": {"type": "object", "default": {}},
            "overlap": {
                "type": "string",
                "enum": [p.value for p in OverlapPolicy],
                "default": "skip",
            },
            "catchup": {
                "type": "string",
                "enum": [p.value for p in CatchupPolicy],
                "default": "latest",
            },
            "grace": _DURATION,
            "catchup_window": _DURATION,
            "queue": {"type": "string", "nullable": True},
            "paused": {"type": "boolean", "default": False},
            "replace": {
                "type": "boolean",
                "default": False,
                "description": "Replace a schedule of the same name (else 409).",
            },
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["name", "deleted"],
        "properties": {"name": {"type": "string"}, "deleted": {"type": "boolean"}},
    },
    "Queue": {
        "type": "object",
        "required": [
            "queue",
            "configured",
            "waiting",
            "active",
            "admitted",
            "concurrency",
            "worker_concurrency",
            "partition_concurrency",
            "rate",
            "priority_aging",
        ],
        "properties": {
            "queue": {"type": "string"},
            "configured": {
                "type": "boolean",
                "description": "Whether [tool.pyworkflow.queues.<name>] configures it.",
            },
            "waiting": {"type": "integer", "minimum": 0, "description": "Runs queued."},
            "active": {
                "type": "integer",
                "minimum": 0,
                "description": "Runs holding a place: pending, running or suspended.",
            },
            "admitted": {
                "type": "integer",
                "minimum": 0,
                "description": "Runs admitted in the last minute.",
            },
            "concurrency": _NULLABLE_LIMIT,
            "worker_concurrency": _NULLABLE_LIMIT,
            "partition_concurrency": _NULLABLE_LIMIT,
            "rate": {
                "type": "object",
                "nullable": True,
                "required": ["count", "period"],
                "properties": {
                    "count": {"type": "integer", "minimum": 1},
                    "period": {"type": "number", "description": "Seconds."},
                },
            },
            "priority_aging": {
                "type": "number",
                "nullable": True,
                "description": "Seconds of waiting worth one priority point.",
            },
        },
    },
    "QueueList": {
        "type": "object",
        "required": ["queues"],
        "properties": {"queues": {"type": "array", "items": _ref("Queue")}},
    },
    "RunId": {
        "type": "object",
        "required": ["run_id"],
        "properties": {"run_id": {"type": "string"}},
    },
    "CancelRun": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": "string",
                "maxLength": 1000,
                "description": "Recorded with the cancellation request.",
            }
        },
    },
    "Cancelled": {
        "type": "object",
        "required": ["cancelled"],
        "properties": {
            "cancelled": {
                "type": "boolean",
                "description": "False when the run had already ended.",
            }
        },
    },
}

_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}

_SCHEDULE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}

_UNAUTHORIZED = _error("Missing or wrong bearer token (only when an API token is configured).")
_BAD_JSON = _error("The body is not JSON (or nested too deeply).")
_TOO_LARGE = _error("The body is over the size limit.")
_NOT_JSON = _error("The Content-Type is not application/json (with UTF-8, if a charset is given).")

_PATHS: dict[str, Any] = {
    "/hooks/{token}": {
        "post": {
            "operationId": "resumeHook",
            "summary": "Send a JSON payload to the live hook `token`.",
            "description": (
                "Hooks created with a `secret` require the header `X-PyWorkflow-Signature: "
                "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, '<t>.' + raw body)>`, with `t` "
                "within the server's tolerance (default 300 s); a repeated signature or "
                "`X-PyWorkflow-Delivery` id is acknowledged (202) without being recorded again. "
                "Never needs the API token."
            ),
            "security": [],
            "parameters": [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-PyWorkflow-Signature",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-PyWorkflow-Delivery",
                    "in": "header",
                    "required": False,
                    "description": "The sender's id of this delivery (1-200 printable ASCII).",
                    "schema": {"type": "string", "pattern": "^[!-~]{1,200}$"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {}}},
            },
            "responses": {
                "202": _json(_ref("RunId"), "Recorded; the run it resumes."),
                "400": _error("The body is not JSON text, or the delivery id is invalid."),
                "401": _error("Missing, stale or wrong signature for a hook with a secret."),
                "404": _error("No live hook has this token (unknown or disposed)."),
                "413": _TOO_LARGE,
                "415": _NOT_JSON,
                "422": _error("The payload does not fit the hook's schema; see `errors`."),
            },
        }
    },
    "/api/runs": {
        "get": {
            "operationId": "listRuns",
            "summary": "Runs, newest first, optionally filtered; cursor pagination.",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": [s.value for s in RunStatus]},
                },
                {
                    "name": "workflow",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "parent",
                    "in": "query",
                    "required": False,
                    "description": "Only the child runs of this run id.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _json(_ref("RunPage"), "One page of runs."),
                "401": _UNAUTHORIZED,
                "422": _error("Invalid status, limit or cursor."),
            },
        },
        "post": {
            "operationId": "startRun",
            "summary": "Start a run of a registered workflow with JSON arguments.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("StartRun")}},
            },
            "responses": {
                "201": _json(_ref("RunId"), "Started; the new run's id."),
                "400": _BAD_JSON,
                "401": _UNAUTHORIZED,
                "404": _error("No workflow with this name is registered."),
                "413": _TOO_LARGE,
                "415": _NOT_JSON,
                "422": _error("Invalid request body; see `errors`."),
            },
        },
    },
    "/api/runs/{run_id}": {
        "get": {
            "operationId": "getRun",
            "summary": "One run: status, result, error and timestamps.",
            "parameters": [_RUN_ID],
            "responses": {
                "200": _json(_ref("Run"), "The run."),
                "401": _UNAUTHORIZED,
                "404": _error("No such run."),
            },
        }
    },
    "/api/runs/{run_id}/events": {
        "get": {
            "operationId": "getRunEvents",
            "summary": "The run's event log, in order.",
            "parameters": [_RUN_ID],
            "responses": {
                "200": _json(_ref("EventList"), "The events."),
                "401": _UNAUTHORIZED,
                "404": _error("No such run."),
            },
        }
    },
    "/api/runs/{run_id}/streams/{name}": {
        "get": {
            "operationId": "followRunStream",
            "summary": "A run's durable stream as server-sent events.",
            "description": (
                "One `event: chunk` per chunk (`id` = its seq, `data` = the chunk as the run's "
                "serializer stored it), following the stream until the run has ended and every "
                "chunk is sent, then `event: end`. Resume with `Last-Event-ID` or `after`."
            ),
            "parameters": [
                _RUN_ID,
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                },
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**62},
                },
            ],
            "responses": {
                "200": {
                    "description": "The stream's chunks, as server-sent events.",
                    "content": {
                        "text/event-stream": {
                            "schema": {  # one event: a chunk, the first (retry) or the end
                                "type": "object",
                                "properties": {
                                    "event": {"type": "string", "enum": ["chunk", "end"]},
                                    "id": {"type": "string"},
                                    "data": {"type": "string"},
                                    "retry": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "401": _UNAUTHORIZED,
                "404": _error("No such run."),
                "422": _error("`after` or `Last-Event-ID` is not a seq, or a bad stream name."),
            },
        }
    },
    "/api/runs/{run_id}/cancel": {
        "post": {
            "operationId": "cancelRun",
            "summary": "Ask the run to stop.",
            "description": "Send `Content-Type: application/json`, with or without a body.",
            "parameters": [_RUN_ID],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("CancelRun")}},
            },
            "responses": {
                "202": _json(_ref("Cancelled"), "Cancellation requested (or run already ended)."),
                "400": _BAD_JSON,
                "401": _UNAUTHORIZED,
                "404": _error("No such run."),
                "413": _TOO_LARGE,
                "415": _NOT_JSON,
                "422": _error("Invalid request body; see `errors`."),
            },
        }
    },
}

_NO_SCHEDULE = _error("No schedule has this name.")
_EMPTY_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {"type": "object", "additionalProperties": False, "properties": {}}
        }
    },
}


def _schedule_action(operation_id: str, summary: str, ok: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/schedules/{name}/<action>``: no body (or ``{}``)."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": "Send `Content-Type: application/json`, with no body or `{}`.",
            "parameters": [_SCHEDULE_NAME],
            "requestBody": _EMPTY_BODY,
            "responses": {
                **ok,
                "400": _BAD_JSON,
                "401": _UNAUTHORIZED,
                "404": _NO_SCHEDULE,
                "413": _TOO_LARGE,
                "415": _NOT_JSON,
                "422": _error("The body is not empty; see `errors`."),
            },
        }
    }


_PATHS.update(
    {
        "/api/schedules": {
            "get": {
                "operationId": "listSchedules",
                "summary": "Every schedule, by name.",
                "responses": {
                    "200": _json(_ref("ScheduleList"), "The schedules."),
                    "401": _UNAUTHORIZED,
                },
            },
            "post": {
                "operationId": "createSchedule",
                "summary": "Create a schedule that starts a run of a workflow at each cron tick.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("CreateSchedule")}},
                },
                "responses": {
                    "201": _json(_ref("Schedule"), "Created."),
                    "400": _BAD_JSON,
                    "401": _UNAUTHORIZED,
                    "404": _error("No workflow with this name is registered."),
                    "409": _error("A schedule has this name (pass `replace` to replace it)."),
                    "413": _TOO_LARGE,
                    "415": _NOT_JSON,
                    "422": _error(
                        "Invalid request body (a field's type, the cron expression, the time "
                        "zone, a policy, arguments that do not fit the workflow); see `errors`."
                    ),
                },
            },
        },
        "/api/schedules/{name}": {
            "get": {
                "operationId": "getSchedule",
                "summary": "One schedule.",
                "parameters": [_SCHEDULE_NAME],
                "responses": {
                    "200": _json(_ref("Schedule"), "The schedule."),
                    "401": _UNAUTHORIZED,
                    "404": _NO_SCHEDULE,
                },
            },
            "delete": {
                "operationId": "deleteSchedule",
                "summary": "Delete a schedule (the runs it started stay).",
                "parameters": [_SCHEDULE_NAME],
                "responses": {
                    "200": _json(_ref("Deleted"), "Deleted."),
                    "401": _UNAUTHORIZED,
                    "404": _NO_SCHEDULE,
                },
            },
        },
        "/api/schedules/{name}/pause": _schedule_action(
            "pauseSchedule",
            "Stop firing the schedule until resumed (runs already started go on).",
            {"200": _json(_ref("Schedule"), "The schedule, paused.")},
        ),
        "/api/schedules/{name}/resume": _schedule_action(
            "resumeSchedule",
            "Fire the schedule again from its next tick after now (no catch-up of the pause).",
            {"200": _json(_ref("Schedule"), "The schedule, resumed.")},
        ),
        "/api/schedules/{name}/trigger": _schedule_action(
            "triggerSchedule",
            "Start a run of the schedule now, whatever its overlap policy and pause.",
            {"201": _json(_ref("RunId"), "Started; the new run's id.")},
        ),
        "/api/queues": {
            "get": {
                "operationId": "listQueues",
                "summary": "Each queue: runs waiting, active, admitted in the last minute; limits.",
                "description": "The queues configured in [tool.pyworkflow.queues.<name>] (even "
                "empty) and any other queue that holds runs, by name.",
                "responses": {
                    "200": _json(_ref("QueueList"), "The queues."),
                    "401": _UNAUTHORIZED,
                },
            }
        },
    }
)
_SCHEMAS.update(
    {
        "Retried": {
            "type": "object",
            "required": ["run_id", "status"],
            "properties": {
                "run_id": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": [s.value for s in RunStatus],
                    "description": "Its status now: pending, or queued in its queue.",
                },
            },
        },
        "ReplayReport": {
            "type": "object",
            "required": [
                "run_id",
                "deterministic",
                "operations",
                "message",
                "position",
                "recorded",
                "called",
            ],
            "properties": {
                "run_id": {"type": "string"},
                "deterministic": {
                    "type": "boolean",
                    "description": "Whether the code now imported replays the log without "
                    "diverging.",
                },
                "operations": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Recorded operations the code called and found in the log "
                    "(before the divergence, if any).",
                },
                "message": {"type": "string", "nullable": True},
                "position": {
                    "type": "string",
                    "nullable": True,
                    "description": "Where it diverges (the operation's position).",
                },
                "recorded": {
                    "type": "string",
                    "nullable": True,
                    "description": "The operation the log holds there.",
                },
                "called": {
                    "type": "string",
                    "nullable": True,
                    "description": "The operation the code calls there now.",
                },
            },
        },
    }
)

_CORRELATION_ID = {
    "name": "correlation_id",
    "in": "path",
    "required": True,
    "description": "The hook's correlation id in the run's log (its hook_created event).",
    "schema": {"type": "string", "minLength": 1},
}


def _run_action(
    operation_id: str, summary: str, ok: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """``POST /api/runs/{run_id}/<action>``: no body (or ``{}``)."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "description": "Send `Content-Type: application/json`, with no body or `{}`.",
            "parameters": [_RUN_ID],
            "requestBody": _EMPTY_BODY,
            "responses": {
                **ok,
                "400": _BAD_JSON,
                "401": _UNAUTHORIZED,
                "404": _error("No such run."),
                "413": _TOO_LARGE,
                "415": _NOT_JSON,
                "422": _error("The body is not empty; see `errors`."),
                **extra,
            },
        }
    }


_PATHS.update(
    {
        "/api/runs/{run_id}/retry": _run_action(
            "retryRun",
            "Resume a failed run from its failed step (completed steps are not run again).",
            {"202": _json(_ref("Retried"), "Retried: the run is scheduled again.")},
            {"409": _error("The run is not failed: only failed runs can be retried.")},
        ),
        "/api/runs/{run_id}/replay": _run_action(
            "replayRun",
            "Replay the run's log against the workflow code the server imports; no side effects.",
            {"200": _json(_ref("ReplayReport"), "Deterministic, or where it diverges.")},
            {
                "404": _error("No such run, or its workflow is not registered in the server."),
                "409": _error("The run's data cannot be read here (a serializer is missing)."),
            },
        ),
        "/api/runs/{run_id}/hooks/{correlation_id}/resume": {
            "post": {
                "operationId": "resumeRunHook",
                "summary": "Send a JSON payload to a live hook of the run, by its correlation id.",
                "description": "The JSON body is the payload (no body: null). Unlike "
                "`POST /hooks/{token}` it needs the API token, never a signature.",
                "parameters": [_RUN_ID, _CORRELATION_ID],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {}}},
                },
                "responses": {
                    "202": _json(_ref("RunId"), "Recorded; the run it resumes."),
                    "400": _error("The body is not JSON text (or nested too deeply)."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No such run, or the run has no hook with this id."),
                    "409": _error("The hook is no longer live (disposed)."),
                    "413": _TOO_LARGE,
                    "415": _NOT_JSON,
                    "422": _error("The payload does not fit the hook's schema; see `errors`."),
                },
            }
        },
    }
)
_PATHS["/api/schedules/{name}/trigger"]["post"]["responses"]["404"] = _error(
    "No schedule has this name, or its workflow is not registered in the server process."
)

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "PyWorkflow",
        "version": "1",
        "description": "Hooks and a JSON API over the runs, schedules and queues of a "
        "PyWorkflow deployment.",
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
}


def openapi_document(*, secured: bool = False, root_path: str = "") -> dict[str, Any]:
    """The OpenAPI 3.0 document describing the server's routes.

    ``secured`` declares the bearer token that ``/api/*`` then requires;
    ``root_path`` (where the app is mounted) becomes the server URL.
    """
    document = copy.deepcopy(_DOCUMENT)
    if not secured:
        del document["security"]
        del document["components"]["securitySchemes"]
        for path in document["paths"].values():
            for operation in path.values():
                operation.pop("security", None)
    if root_path:
        document["servers"] = [{"url": root_path}]
    return document
