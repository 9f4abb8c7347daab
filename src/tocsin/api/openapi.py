"""The OpenAPI 3.1 document of the API, with the role each route needs filled in from the Gate."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tocsin import __version__
from tocsin.api.incidents import ACTIONS, MAX_NAME, MAX_TEXT
from tocsin.api.oncall import LAST_AT
from tocsin.api.replies import MAX_BODY
from tocsin.model import IncidentState
from tocsin.records.priority import PRIORITIES, RATINGS
from tocsin.tokens import Role

__all__ = ["OPERATIONS", "openapi_document"]

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_MAYBE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_MOMENT: Schema = {
    "description": "epoch seconds, or ISO 8601 with a UTC offset",
    "oneOf": [
        {"type": "number", "minimum": 0, "maximum": 253402300799},
        {"type": "string", "format": "date-time"},
    ],
}
_DURATION: Schema = {
    "description": "like 90m or 2h, or seconds",
    "oneOf": [
        {"type": "string", "pattern": "^[1-9][0-9]{0,5}(ms|s|m|h|d)$"},
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1e9},
    ],
}
_STATES = [s.value for s in IncidentState]
_LIST_OF = "^({0})(,({0}))*$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(props: Mapping[str, Schema], *, required: tuple[str, ...] | None = None) -> Schema:
    """A closed object; every property is required unless `required` says which are."""
    return {
        "type": "object",
        "properties": dict(props),
        "required": list(props) if required is None else list(required),
        "additionalProperties": False,
    }


def _reply(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): {"$ref": f"#/components/responses/{_ERROR_REPLIES[s][0]}"} for s in statuses}


def _body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_ERROR_REPLIES: dict[int, tuple[str, str]] = {
    400: ("Invalid", "the request is not valid; the error says what to fix"),
    401: ("NoToken", "no token, or an unknown one (Authorization: Bearer <token>)"),
    403: ("NotAllowed", "the token's role is too low, or no tokens are configured"),
    404: ("NotFound", "there is no such record"),
    409: ("Conflict", "the change does not fit the record's state"),
    413: ("TooLarge", f"the body is over {MAX_BODY // 1024} KiB"),
    503: ("StoreFailing", "the store failed; nothing changed"),
}

_MATCHER: Schema = {
    "description": "an Alertmanager-style matcher: host=web1, rule=~ssh-.*, or a mapping",
    "oneOf": [
        {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.]*(=~|!~|!=|=)"},
        _object(
            {"name": _TEXT, "op": {"enum": ["=", "!=", "=~", "!~"]}, "value": _TEXT},
            required=("name", "value"),
        ),
    ],
}

_INCIDENT: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1},
    "fingerprint": _TEXT,
    "rule": _TEXT,
    "key": _TEXT,
    "title": _TEXT,
    "state": {"enum": _STATES},
    "priority": {"enum": list(PRIORITIES)},
    "impact": {"enum": list(RATINGS)},
    "urgency": {"enum": list(RATINGS)},
    "service": _TEXT,
    "category": _TEXT,
    "description": _TEXT,
    "labels": {"type": "object", "additionalProperties": _TEXT},
    "count": {"type": "integer", "minimum": 1},
    "first_seen": _TIME,
    "last_seen": _TIME,
    "opened_at": _TIME,
    "acknowledged_at": _MAYBE_TIME,
    "resolved_at": _MAYBE_TIME,
    "closed_at": _MAYBE_TIME,
    "assignee": _TEXT,
    "group": _TEXT,
    "workaround": _TEXT,
    "reopened": {"type": "integer", "minimum": 0},
    "muted": {"type": "string", "description": "why its notifications are held, if so"},
    "samples": {"type": "array", "items": {"type": "object"}},
    "sla": {"type": "array", "items": _TEXT, "description": "e.g. response:warning"},
    "escalation": {
        "oneOf": [
            {"type": "null"},
            _object(
                {
                    "policy": _TEXT,
                    "level": {"type": "integer", "description": "counted from 1"},
                    "next_at": _MAYBE_TIME,
                    "rounds": {"type": "integer", "minimum": 0},
                }
            ),
        ]
    },
}


_SCHEMAS: dict[str, Schema] = {
    "Error": _object({"error": _TEXT}),
    "Incident": _object(_INCIDENT),
    "TimelineEntry": _object(
        {
            "time": _TIME,
            "kind": {"type": "string", "description": "state, comment, assign, rate, notify, ..."},
            "from": {"type": ["string", "null"]},
            "to": _TEXT,
            "actor": {"type": "string", "description": "the token's principal, or tocsin"},
            "note": _TEXT,
        }
    ),
    "Timeline": _object({"timeline": {"type": "array", "items": _ref("TimelineEntry")}}),
    "IncidentDetail": _object(
        {**_INCIDENT, "timeline": {"type": "array", "items": _ref("TimelineEntry")}}
    ),
    "IncidentList": _object({"incidents": {"type": "array", "items": _ref("Incident")}}),
    "Note": _object({"note": {"type": "string", "maxLength": MAX_TEXT}}, required=()),
    "Assignment": {
        **_object(
            {
                "assignee": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_NAME},
                "group": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_NAME},
                "note": {"type": "string", "maxLength": MAX_TEXT},
            },
            required=(),
        ),
        "description": "absent: unchanged; null: cleared",
        "anyOf": [{"required": ["assignee"]}, {"required": ["group"]}],
    },
    "Comment": _object({"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}}),
    "Rating": {
        **_object(
            {
                "impact": {"enum": list(RATINGS)},
                "urgency": {"enum": list(RATINGS)},
                "note": {"type": "string", "maxLength": MAX_TEXT},
            },
            required=(),
        ),
        "description": "the priority follows from impact and urgency",
        "anyOf": [{"required": ["impact"]}, {"required": ["urgency"]}],
    },
    "OnCall": _object(
        {
            "at": _TIME,
            "oncall": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "schedule": _TEXT,
                        "on_call": {"type": ["string", "null"]},
                        "user": {"type": ["object", "null"]},
                        "until": {**_MAYBE_TIME, "description": "the next handoff"},
                    },
                    "required": ["schedule", "on_call", "user", "until"],
                },
            },
        }
    ),
    "Silence": _object(
        {
            "id": _TEXT,
            "matchers": {"type": "array", "items": _TEXT},
            "starts_at": _TIME,
            "ends_at": _TIME,
            "created_by": _TEXT,
            "comment": _TEXT,
            "created_at": _TIME,
            "expired_at": _MAYBE_TIME,
            "state": {"enum": ["pending", "active", "expired"]},
        }
    ),
    "SilenceList": _object({"silences": {"type": "array", "items": _ref("Silence")}}),
    "NewSilence": {
        **_object(
            {
                "matchers": {"type": "array", "minItems": 1, "items": _MATCHER},
                "starts_at": _MOMENT,
                "ends_at": _MOMENT,
                "duration": _DURATION,
                "created_by": _TEXT,
                "comment": _TEXT,
            },
            required=("matchers", "created_by", "comment"),
        ),
        "oneOf": [{"required": ["ends_at"]}, {"required": ["duration"]}],
    },
    "Window": {
        "oneOf": [
            _object(
                {
                    "name": _TEXT,
                    "source": {"const": "config"},
                    "kind": {"enum": ["one-off", "recurring"]},
                    "matchers": {"type": "array", "items": _TEXT},
                    "where": {"type": ["string", "null"]},
                    "active": {"type": "boolean"},
                }
            ),
            _ref("MadeWindow"),
        ]
    },
    "MadeWindow": _object(
        {
            "name": _TEXT,
            "source": {"const": "api"},
            "kind": {"const": "one-off"},
            "matchers": {"type": "array", "items": _TEXT},
            "start": _TIME,
            "end": _TIME,
            "created_by": _TEXT,
            "comment": _TEXT,
            "created_at": _TIME,
            "remind_before": {"type": ["number", "null"]},
            "reminded": {"type": "boolean"},
            "ended_early_at": _MAYBE_TIME,
            "state": {"enum": ["pending", "active", "ended"]},
            "active": {"type": "boolean"},
        }
    ),
    "WindowList": _object({"windows": {"type": "array", "items": _ref("Window")}}),
    "NewWindow": {
        **_object(
            {
                "name": {"type": "string", "minLength": 1},
                "matchers": {"type": "array", "minItems": 1, "items": _MATCHER},
                "start": _MOMENT,
                "end": _MOMENT,
                "duration": _DURATION,
                "created_by": _TEXT,
                "comment": _TEXT,
                "remind_before": {"oneOf": [_DURATION, {"type": "null"}]},
            },
            required=("name", "matchers", "created_by", "comment"),
        ),
        "oneOf": [{"required": ["end"]}, {"required": ["duration"]}],
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"enum": ["ok", "starting", "degraded"]}},
        "required": ["status"],
    },
}

_ID: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}
_CHANGE_ERRORS = (400, 404, 409, 413, 503)


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _transition(action: str, to: str) -> Schema:
    return {
        "summary": f"{action.capitalize()} an incident",
        "description": f"Moves it to {'new, a resolved one' if to == 'reopen' else to}; "
        "the token's principal is the actor on the timeline.",
        "tags": ["incidents"],
        "parameters": [_ID],
        "requestBody": _body(_ref("Note"), required=False),
        "responses": {
            "200": _reply("the incident as it is now", _ref("Incident")),
            **_errors(*_CHANGE_ERRORS),
        },
    }


# (method, path as aiohttp routes it) -> the operation, without security (openapi_document adds it).
OPERATIONS: dict[tuple[str, str], Schema] = {
    ("GET", "/healthz"): {
        "summary": "Whether the daemon is up",
        "tags": ["daemon"],
        "responses": {
            "200": _reply("ok", _ref("Health")),
            "503": _reply("starting or degraded", _ref("Health")),
        },
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics",
        "tags": ["daemon"],
        "responses": {
            "200": {"description": "the text format", "content": {"text/plain": {"schema": _TEXT}}}
        },
    },
    ("GET", "/api/v1/openapi.json"): {
        "summary": "This document",
        "tags": ["daemon"],
        "responses": {"200": _reply("OpenAPI 3.1", {"type": "object"})},
    },
    ("GET", "/api/v1/config"): {
        "summary": "The daemon's config, summarized",
        "tags": ["daemon"],
        "responses": {"200": _reply("what `tocsin_started` logs", {"type": "object"})},
    },
    ("GET", "/api/v1/incidents"): {
        "summary": "List incidents, newest first",
        "tags": ["incidents"],
        "parameters": [
            _query(
                "state",
                {"type": "string", "pattern": _LIST_OF.format("|".join(["all", "open", *_STATES]))},
                "all (default), open, or a comma-separated list of states",
            ),
            _query(
                "priority",
                {"type": "string", "pattern": _LIST_OF.format("|".join(PRIORITIES))},
                "a comma-separated list, like P1,P2",
            ),
            _query("service", _TEXT, "exactly this service"),
            _query("assignee", _TEXT, "exactly this assignee (empty: unassigned)"),
            _query("group", _TEXT, "exactly this assignment group"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
            _query("offset", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "skip"),
        ],
        "responses": {"200": _reply("the incidents", _ref("IncidentList")), **_errors(400, 503)},
    },
    ("GET", "/api/v1/incidents/{id}"): {
        "summary": "One incident with its timeline",
        "tags": ["incidents"],
        "parameters": [_ID],
        "responses": {
            "200": _reply("the incident", _ref("IncidentDetail")),
            **_errors(400, 404, 503),
        },
    },
    ("GET", "/api/v1/incidents/{id}/timeline"): {
        "summary": "An incident's timeline, oldest first",
        "tags": ["incidents"],
        "parameters": [_ID],
        "responses": {"200": _reply("the timeline", _ref("Timeline")), **_errors(400, 404, 503)},
    },
    **{
        ("POST", f"/api/v1/incidents/{{id}}/{action}"): _transition(action, to)
        for action, to in ACTIONS.items()
    },
    ("POST", "/api/v1/incidents/{id}/assign"): {
        "summary": "Assign an incident to a person and/or group",
        "tags": ["incidents"],
        "parameters": [_ID],
        "requestBody": _body(_ref("Assignment")),
        "responses": {"200": _reply("the incident", _ref("Incident")), **_errors(*_CHANGE_ERRORS)},
    },
    ("POST", "/api/v1/incidents/{id}/comments"): {
        "summary": "Comment on an incident",
        "tags": ["incidents"],
        "parameters": [_ID],
        "requestBody": _body(_ref("Comment")),
        "responses": {"201": _reply("the incident", _ref("Incident")), **_errors(*_CHANGE_ERRORS)},
    },
    ("PATCH", "/api/v1/incidents/{id}"): {
        "summary": "Change an incident's impact and/or urgency",
        "tags": ["incidents"],
        "parameters": [_ID],
        "requestBody": _body(_ref("Rating")),
        "responses": {"200": _reply("the incident", _ref("Incident")), **_errors(*_CHANGE_ERRORS)},
    },
    ("GET", "/api/v1/oncall"): {
        "summary": "Who is on call in every schedule",
        "tags": ["oncall"],
        "parameters": [
            _query(
                "at",
                {
                    "oneOf": [
                        {"type": "number", "minimum": 0, "exclusiveMaximum": LAST_AT},
                        {"type": "string", "format": "date-time"},
                    ]
                },
                "epoch seconds or ISO 8601 with a UTC offset, before 9998 (default: now)",
            )
        ],
        "responses": {"200": _reply("one entry per schedule", _ref("OnCall")), **_errors(400)},
    },
    ("GET", "/api/v1/silences"): {
        "summary": "List silences, oldest first",
        "tags": ["silences"],
        "parameters": [_query("state", {"enum": ["pending", "active", "expired"]}, "only these")],
        "responses": {"200": _reply("the silences", _ref("SilenceList")), **_errors(400)},
    },
    ("GET", "/api/v1/silences/{id}"): {
        "summary": "One silence",
        "tags": ["silences"],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _TEXT}],
        "responses": {"200": _reply("the silence", _ref("Silence")), **_errors(404)},
    },
    ("POST", "/api/v1/silences"): {
        "summary": "Create a silence",
        "tags": ["silences"],
        "requestBody": _body(_ref("NewSilence")),
        "responses": {"201": _reply("the silence", _ref("Silence")), **_errors(400, 413, 503)},
    },
    ("DELETE", "/api/v1/silences/{id}"): {
        "summary": "Expire a silence now",
        "tags": ["silences"],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": _TEXT}],
        "responses": {"200": _reply("the silence", _ref("Silence")), **_errors(404, 409, 503)},
    },
    ("GET", "/api/v1/maintenance"): {
        "summary": "Maintenance windows: configured and API-made",
        "tags": ["maintenance"],
        "responses": {"200": _reply("the windows", _ref("WindowList"))},
    },
    ("POST", "/api/v1/maintenance"): {
        "summary": "Make a one-off maintenance window",
        "tags": ["maintenance"],
        "requestBody": _body(_ref("NewWindow")),
        "responses": {"201": _reply("the window", _ref("MadeWindow")), **_errors(400, 413, 503)},
    },
    ("DELETE", "/api/v1/maintenance/{name}"): {
        "summary": "End an API-made window now",
        "tags": ["maintenance"],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": _TEXT}],
        "responses": {"200": _reply("the window", _ref("MadeWindow")), **_errors(404, 409, 503)},
    },
}


def openapi_document(needs: Mapping[tuple[str, str], Role | None]) -> Schema:
    """The document for the routes served, each with the role it needs (None: no token)."""
    paths: dict[str, dict[str, Schema]] = {}
    for (method, path), role in needs.items():
        if (method, path) not in OPERATIONS:
            raise LookupError(f"{method} {path} is served but not in api/openapi.py")
        operation = copy.deepcopy(OPERATIONS[(method, path)])
        if role is None:
            operation["security"] = []
        else:
            operation["security"] = [{"bearer": []}]
            operation["x-tocsin-role"] = str(role)
            operation["description"] = (
                f"{operation.get('description', '')} Needs the {role} role.".strip()
            )
            operation["responses"].update(_errors(401, 403))
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tocsin",
            "version": __version__,
            "description": "Incidents, on-call, silences and maintenance windows of one daemon. "
            'Errors are {"error": sentence}.',
        },
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy(_SCHEMAS),
            "responses": {
                name: _reply(description, _ref("Error"))
                for name, description in _ERROR_REPLIES.values()
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from http.tokens_file; viewer < operator < admin",
                }
            },
        },
    }
