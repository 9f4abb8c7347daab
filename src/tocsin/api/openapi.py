"""The OpenAPI 3.1 document of the API, with the role each route needs filled in from the Gate."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tocsin import __version__
from tocsin.api.access import (
    AUDIT_ACTIONS,
    DURATION,
    GRANT_STATES,
    MAX_DURATION,
    MAX_ROLE,
    MAX_SUBJECT,
)
from tocsin.api.handlers import MAX_LIMIT
from tocsin.api.incidents import ACTIONS, MAX_NAME, MAX_TEXT
from tocsin.api.oncall import LAST_AT
from tocsin.api.problems import ACTIONS as PROBLEM_ACTIONS
from tocsin.api.problems import KNOWN_ERROR_NAME, MAX_LINKS, MAX_TITLE, PROBLEM_STATES
from tocsin.api.replies import MAX_BODY
from tocsin.api.requests import ITEM_NAME, REQUEST_ACTIONS, REQUEST_STATES
from tocsin.api.rules import CORRELATION_OPTIONS
from tocsin.model import RUN_STATES, IncidentState
from tocsin.records.catalog import FieldType
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


# Text with at least one character Python's str.strip() keeps, as the desks require; written out
# because `\S` differs between regex dialects (U+001C to U+001F are space to Python only).
HAS_TEXT = "[^\\t-\\r\\x1c- \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


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


_RECORD_ID: Schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}

_PROBLEM: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1},
    "title": _TEXT,
    "state": {"enum": list(PROBLEM_STATES)},
    "opened_at": _TIME,
    "service": _TEXT,
    "category": _TEXT,
    "fingerprint": {"type": "string", "description": "the recurrence key it was opened for"},
    "incidents": {"type": "array", "items": {"type": "integer"}, "description": "linked ids"},
    "incident_count": {"type": "integer", "minimum": 0, "description": "ever linked"},
    "root_cause": _TEXT,
    "workaround": _TEXT,
    "owner": _TEXT,
    "known_error": {"type": "string", "description": "its known error's name, if any"},
    "resolved_at": _MAYBE_TIME,
    "closed_at": _MAYBE_TIME,
}

_ROLES: Schema = {"enum": [str(r) for r in Role]}
_REQUEST: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1},
    "item": {"type": "string", "description": "the catalog item asked for"},
    "input": {"type": "object", "description": "the input, checked against the item's fields"},
    "state": {"enum": list(REQUEST_STATES)},
    "requested_by": _TEXT,
    "source": {"type": "string", "description": "api, or rule:NAME for one a rule raised"},
    "opened_at": _TIME,
    "due_at": {**_MAYBE_TIME, "description": "the SLA: fulfilled by then"},
    "approval": {"type": "string", "description": "the least role that approves; empty: none"},
    "decided_by": {"type": "string", "description": "who approved or rejected it (catalog: "
                   "it needed no approval)"},
    "decided_at": _MAYBE_TIME,
    "run_id": {"type": ["integer", "null"], "minimum": 1, "description": "its fulfilment run"},
    "started_at": _MAYBE_TIME,
    "finished_at": _MAYBE_TIME,
    "closed_at": _MAYBE_TIME,
    "reason": {"type": "string", "description": "why it was rejected or failed"},
    "sla_breached": {"type": "boolean"},
}  # fmt: skip
_GRANT: dict[str, Schema] = {
    "id": {"type": "integer", "minimum": 1},
    "role": _TEXT,
    "subject": _TEXT,
    "requested_by": _TEXT,
    "requested_at": _TIME,
    "request": {"type": "integer", "minimum": 1, "description": "the request that asked"},
    "duration": {"type": "number", "description": "seconds, counted from approval"},
    "state": {"enum": list(GRANT_STATES)},
    "rights": {"type": "array", "items": _TEXT},
    "grant_runbook": _TEXT,
    "revoke_runbook": _TEXT,
    "source": _TEXT,
    "approve_by": {**_MAYBE_TIME, "description": "while pending approval"},
    "granted_by": {"type": "string", "description": "the approver, or policy"},
    "expires_at": _MAYBE_TIME,
    "granted_at": _MAYBE_TIME,
    "ending": {"type": "string", "description": "while being removed: the state it heads for"},
    "ended_by": _TEXT,
    "ended_at": _MAYBE_TIME,
    "why": {"type": "string", "description": "why it ended, or is ending"},
    "revoke_failures": {"type": "integer", "minimum": 0, "description": "failed revoke runs"},
    "retry_at": {**_MAYBE_TIME, "description": "while revoking: when the revoke runs again"},
}
_WHEN_QUERY: Schema = {
    "description": "epoch seconds, or ISO 8601 with a UTC offset",
    "oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}],
}

_RUN_REQUIRED = (
    "id", "runbook", "rule", "key", "target", "incident", "state", "reason",
    "created_at", "started_at", "finished_at", "steps", "result",
)  # fmt: skip

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
    "Rule": _object(
        {
            "id": _TEXT,
            "kind": {
                "enum": ["rule", "group", "clear", "expect"],
                "description": "group: fed by its member rules; clear/expect: a rule's hidden "
                "follow-up matcher, tried on every event",
            },
            "follows": {"type": ["string", "null"], "description": "the rule a follow-up is of"},
            "where": {"type": "string", "description": "file:line of its definition"},
            "description": _TEXT,
            "tags": {"type": "array", "items": _TEXT},
            "correlation": {"type": "array", "items": {"enum": list(CORRELATION_OPTIONS)}},
            "actions_declared": {"type": "array", "items": _TEXT},
            "continue": {"type": "boolean"},
            "evaluated": {
                "type": "integer",
                "minimum": 0,
                "description": "events tried against it (the prefilter spares it most)",
            },
            "matches": {"type": "integer", "minimum": 0},
            "actions": {"type": "integer", "minimum": 0, "description": "run; held ones not"},
            "eval_seconds": {
                "type": "number",
                "minimum": 0,
                "description": "time on its events, matcher to last action; one evaluation in "
                "8 is timed and the sum scaled",
            },
            "eval_us_per_event": {"type": ["number", "null"], "minimum": 0},
        }
    ),
    "RuleList": _object({"rules": {"type": "array", "items": _ref("Rule")}}),
    "Reload": _object(
        {
            "status": {"enum": ["ok", "failed"]},
            "trigger": {"type": "string", "description": "api, sighup or watch"},
            "errors": {"type": "array", "items": {"type": "string"}, "description": "file:line"},
            "restart_needed": {
                "type": "array",
                "items": {"type": "string"},
                "description": "changed config keys that apply only after a restart",
            },
            "rules": {"type": "integer", "minimum": 0},
            "rules_restarted": {
                "type": "array",
                "items": {"type": "string"},
                "description": "changed rules: their correlation state starts over",
            },
            "config_hash": {"type": "string"},
        }
    ),
    "Note": _object({"note": {"type": "string", "maxLength": MAX_TEXT}}, required=()),
    "Reason": _object(
        {"note": {"type": "string", "maxLength": MAX_TEXT, "pattern": HAS_TEXT}},
        required=("note",),
    ),
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
            required=("matchers", "comment"),
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
            required=("name", "matchers", "comment"),
        ),
        "oneOf": [{"required": ["end"]}, {"required": ["duration"]}],
    },
    "Run": _object(
        {
            "id": {"type": "integer", "minimum": 1},
            "runbook": _TEXT,
            "rule": _TEXT,
            "key": _TEXT,
            "target": {"type": "string", "description": "what the circuit breaker counts by"},
            "incident": {"type": ["integer", "null"], "minimum": 1},
            "state": {"enum": list(RUN_STATES)},
            "reason": {"type": "string", "description": "why it is in its state, if it says"},
            "created_at": _TIME,
            "started_at": _MAYBE_TIME,
            "finished_at": _MAYBE_TIME,
            "steps": {
                "type": "array",
                "items": {"type": "object", "description": "a rendered step: argv, url or topic"},
            },
            "result": {
                "type": ["object", "null"],
                "properties": {
                    "summary": _TEXT,
                    "exit": {"type": ["integer", "null"]},
                    "output": _TEXT,
                },
            },
            "dry_run": {"type": "boolean"},
            "expires_at": {**_MAYBE_TIME, "description": "when a wait for approval ends"},
            "decided_by": {"type": "string", "description": "who approved or rejected it"},
        },
        required=_RUN_REQUIRED,
    ),
    "RunList": _object({"runs": {"type": "array", "items": _ref("Run")}}),
    "KillSwitch": _object(
        {
            "engaged": {"type": "boolean", "description": "true: no remediation runs"},
            "by": {"type": ["string", "null"]},
            "at": _MAYBE_TIME,
            "why": {"type": ["string", "null"]},
        }
    ),
    "Stop": _object({"why": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}}),
    "Problem": _object(_PROBLEM),
    "ProblemDetail": _object(
        {**_PROBLEM, "timeline": {"type": "array", "items": _ref("TimelineEntry")}}
    ),
    "ProblemList": _object({"problems": {"type": "array", "items": _ref("Problem")}}),
    "NewProblem": _object(
        {
            "title": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TITLE,
                "pattern": HAS_TEXT,
            },
            "service": {"type": "string", "maxLength": MAX_NAME},
            "category": {"type": "string", "maxLength": MAX_NAME},
            "incidents": {
                "type": "array",
                "items": _RECORD_ID,
                "uniqueItems": True,
                "maxItems": MAX_LINKS,
                "description": "incidents to link now",
            },
        },
        required=("title",),
    ),
    "ProblemChange": {
        **_object(
            {
                "root_cause": {"type": "string", "maxLength": MAX_TEXT},
                "workaround": {"type": "string", "maxLength": MAX_TEXT},
                "owner": {"type": ["string", "null"], "minLength": 1, "maxLength": MAX_NAME},
                "title": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TITLE,
                    "pattern": HAS_TEXT,
                },
            },
            required=(),
        ),
        "description": 'absent: unchanged; "" clears root_cause and workaround, null the owner',
        "minProperties": 1,
    },
    "Link": _object({"incident": _RECORD_ID}),
    "KnownError": _object(
        {
            "name": _TEXT,
            "source": {"enum": ["config", "api"], "description": "only api ones can be removed"},
            "matchers": {"type": "array", "items": _TEXT},
            "workaround": _TEXT,
            "root_cause": _TEXT,
            "problem": {"type": ["integer", "null"], "minimum": 1},
            "created_by": _TEXT,
            "created_at": {**_MAYBE_TIME, "description": "null for the config's"},
        }
    ),
    "KnownErrorList": _object({"known_errors": {"type": "array", "items": _ref("KnownError")}}),
    "NewKnownError": _object(
        {
            "name": {"type": "string", "pattern": KNOWN_ERROR_NAME},
            "matchers": {"type": "array", "minItems": 1, "items": _MATCHER},
            "workaround": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
            "root_cause": {"type": "string", "maxLength": MAX_TEXT},
            "problem": {"oneOf": [_RECORD_ID, {"type": "null"}]},
        },
        required=("name", "matchers", "workaround"),
    ),
    "CatalogField": _object(
        {
            "name": _TEXT,
            "type": {"enum": [str(t) for t in FieldType]},
            "required": {"type": "boolean"},
            "description": _TEXT,
            "default": {"description": "filled in when the field is not given"},
            "max_length": {"type": "integer", "description": "string"},
            "pattern": {"type": "string", "description": "string: RE2, whole value"},
            "min": {"type": "integer", "description": "integer, inclusive"},
            "max": {"type": "integer", "description": "integer, inclusive"},
            "values": {"type": "array", "items": _TEXT, "description": "enum"},
        },
        required=("name", "type", "required", "description"),
    ),
    "CatalogItem": _object(
        {
            "name": _TEXT,
            "description": _TEXT,
            "fields": {"type": "array", "items": _ref("CatalogField")},
            "approval": {"oneOf": [_ROLES, {"type": "null"}], "description": "who approves"},
            "runbook": {"type": ["string", "null"], "description": "null: fulfilled by hand"},
            "sla": {"type": ["number", "null"], "description": "seconds to fulfilment"},
            "escalation": {"type": ["string", "null"]},
        }
    ),
    "Catalog": _object({"items": {"type": "array", "items": _ref("CatalogItem")}}),
    "ServiceRequest": _object(_REQUEST),
    "ServiceRequestDetail": _object(
        {**_REQUEST, "timeline": {"type": "array", "items": _ref("TimelineEntry")}}
    ),
    "ServiceRequestList": _object({"requests": {"type": "array", "items": _ref("ServiceRequest")}}),
    "NewServiceRequest": _object(
        {
            "item": {"type": "string", "pattern": ITEM_NAME},
            "input": {"type": "object", "description": "field values; see the catalog"},
        },
        required=("item",),
    ),
    "Grant": _object(_GRANT),
    "GrantList": _object({"grants": {"type": "array", "items": _ref("Grant")}}),
    "NewAccessRequest": _object(
        {
            "role": {"type": "string", "minLength": 1, "maxLength": MAX_ROLE},
            "subject": {"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT},
            "duration": {
                "description": "like 2h, or seconds; absent or null: the role's max_duration",
                "oneOf": [
                    {"type": "string", "pattern": DURATION},
                    {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION},
                    {"type": "null"},
                ],
            },
        },
        required=("role", "subject"),
    ),
    "AccessDecision": _object(
        {
            "verdict": {"enum": ["allowed", "denied", "needs_approval"]},
            "reason": {"type": "string", "description": "the policy's word, as audited"},
            "grant": {"oneOf": [_ref("Grant"), {"type": "null"}], "description": "null: denied"},
        }
    ),
    "Approval": _object({}, required=()),
    "Rejection": _object({"why": {"type": "string", "maxLength": MAX_TEXT}}, required=()),
    "Revoke": _object(
        {
            "role": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_ROLE,
                "description": "an access role, or * for every grant of the subject",
            },
            "subject": {"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT},
            "why": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
        }
    ),
    "Revocation": _object(
        {
            "verdict": {"enum": ["allowed", "denied"]},
            "reason": _TEXT,
            "grants": {"type": "array", "items": _ref("Grant"), "description": "ending now"},
        }
    ),
    "AuditEntry": _object(
        {
            "time": _TIME,
            "action": {"enum": list(AUDIT_ACTIONS)},
            "role": {"type": "string", "description": "* for a revoke of everything"},
            "subject": _TEXT,
            "by": {
                "type": "string",
                "description": "a person, rule:NAME, policy, expiry or a runbook",
            },
            "why": _TEXT,
            "grant": {"type": ["integer", "null"], "minimum": 1},
            "request": {"type": ["integer", "null"], "minimum": 1},
        }
    ),
    "AuditLog": _object({"audit": {"type": "array", "items": _ref("AuditEntry")}}),
    "Health": {
        "type": "object",
        "properties": {"status": {"enum": ["ok", "starting", "degraded"]}},
        "required": ["status"],
    },
}

_ID: Schema = {"name": "id", "in": "path", "required": True, "schema": _RECORD_ID}
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


def _listing(states: tuple[str, ...]) -> list[Schema]:
    return [
        _query("state", {"enum": list(states)}, "only this state (default: all)"),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "default 100"),
        _query("offset", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "skip"),
    ]


def _change(summary: str, tag: str, reply: str, *, body: Schema | None = None,
            status: str = "200", path_id: bool = True,
            errors: tuple[int, ...] = _CHANGE_ERRORS) -> Schema:  # fmt: skip
    """A change to a run, problem or known error, answered with the record as it is now."""
    operation: Schema = {
        "summary": summary,
        "tags": [tag],
        "parameters": [_ID] if path_id else [],
        "responses": {status: _reply("as it is now", _ref(reply)), **_errors(*errors)},
    }
    operation["requestBody"] = _body(_ref("Note"), required=False) if body is None else body
    return operation


_SWITCH = "/api/v1/remediation/kill-switch"
_NAME_PARAM: Schema = {"name": "name", "in": "path", "required": True, "schema": _TEXT}

_REQUEST_SUMMARIES = {
    "approve": "Approve a submitted request (the item may need a higher token role)",
    "reject": "Reject a submitted request (the item may need a higher token role)",
    "start": "Start fulfilling an approved request by hand (409 while a runbook fulfils it)",
    "fulfil": "Mark an approved or hand-started request fulfilled",
    "fail": "Mark an approved or hand-started request failed; the note says why",
    "close": "Close a rejected, fulfilled or failed request",
}
_GRANT_PATH = "/api/v1/access/grants/{id}"
_NAME_FILTER: Schema = {"type": "string", "minLength": 1}

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
    ("POST", "/api/v1/reload"): {
        "summary": "Reload the config and rules: all of it is checked first, and a failed "
        "reload changes nothing",
        "tags": ["daemon"],
        "responses": {
            "200": _reply("the reload", _ref("Reload")),
            "422": _reply("the reload failed; the running config stays", _ref("Reload")),
        },
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
    ("GET", "/api/v1/rules"): {
        "summary": "The loaded rules in order, with what each did since the daemon started",
        "tags": ["rules"],
        "responses": {"200": _reply("the rules", _ref("RuleList")), **_errors(400)},
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
    ("GET", "/api/v1/runs"): {
        "summary": "List remediation runs, newest first",
        "tags": ["remediation"],
        "parameters": _listing(RUN_STATES),
        "responses": {"200": _reply("the runs", _ref("RunList")), **_errors(400, 503)},
    },
    ("GET", "/api/v1/runs/{id}"): {
        "summary": "One remediation run: its rendered steps and result",
        "tags": ["remediation"],
        "parameters": [_ID],
        "responses": {"200": _reply("the run", _ref("Run")), **_errors(400, 404, 503)},
    },
    ("POST", "/api/v1/runs/{id}/approve"): _change(
        "Approve a run that awaits approval", "remediation", "Run"
    ),
    ("POST", "/api/v1/runs/{id}/reject"): _change(
        "Reject a run that awaits approval; it never runs", "remediation", "Run"
    ),
    ("GET", _SWITCH): {
        "summary": "Whether the kill switch stops all remediation",
        "tags": ["remediation"],
        "responses": {"200": _reply("the switch", _ref("KillSwitch")), **_errors(503)},
    },
    ("POST", _SWITCH): _change(
        "Engage the kill switch: no remediation runs until it is released",
        "remediation",
        "KillSwitch",
        body=_body(_ref("Stop")),
        path_id=False,
        errors=(400, 409, 413, 503),
    ),
    ("DELETE", _SWITCH): {
        "summary": "Release the kill switch: remediation runs again",
        "tags": ["remediation"],
        "responses": {"200": _reply("the switch", _ref("KillSwitch")), **_errors(409, 503)},
    },
    ("GET", "/api/v1/problems"): {
        "summary": "List problems, newest first",
        "tags": ["problems"],
        "parameters": _listing(PROBLEM_STATES),
        "responses": {"200": _reply("the problems", _ref("ProblemList")), **_errors(400, 503)},
    },
    ("POST", "/api/v1/problems"): _change(
        "Open a problem, linked to incidents",
        "problems",
        "Problem",
        body=_body(_ref("NewProblem")),
        status="201",
        path_id=False,
    ),
    ("GET", "/api/v1/problems/{id}"): {
        "summary": "One problem with its linked incidents and timeline",
        "tags": ["problems"],
        "parameters": [_ID],
        "responses": {
            "200": _reply("the problem", _ref("ProblemDetail")),
            **_errors(400, 404, 503),
        },
    },
    ("PATCH", "/api/v1/problems/{id}"): _change(
        "Set a problem's root cause, workaround, owner or title",
        "problems",
        "Problem",
        body=_body(_ref("ProblemChange")),
    ),
    **{
        ("POST", f"/api/v1/problems/{{id}}/{action}"): _change(
            f"Move a problem to {'investigating (from resolved)' if to == 'reopen' else to}",
            "problems",
            "Problem",
        )
        for action, to in PROBLEM_ACTIONS.items()
    },
    ("POST", "/api/v1/problems/{id}/incidents"): _change(
        "Link an incident to a problem", "problems", "Problem", body=_body(_ref("Link"))
    ),
    ("GET", "/api/v1/known-errors"): {
        "summary": "Known errors, from the config and the API",
        "tags": ["problems"],
        "responses": {"200": _reply("the known errors", _ref("KnownErrorList")), **_errors(503)},
    },
    ("POST", "/api/v1/known-errors"): _change(
        "Record a known error: new matching incidents get its workaround",
        "problems",
        "KnownError",
        body=_body(_ref("NewKnownError")),
        status="201",
        path_id=False,
    ),
    ("DELETE", "/api/v1/known-errors/{name}"): {
        "summary": "Remove a known error made through the API",
        "tags": ["problems"],
        "parameters": [_NAME_PARAM],
        "responses": {
            "200": _reply("the known error removed", _ref("KnownError")),
            **_errors(404, 409, 503),
        },
    },
    ("GET", "/api/v1/catalog"): {
        "summary": "The service catalog: what may be requested, and the input each takes",
        "tags": ["requests"],
        "responses": {"200": _reply("the items", _ref("Catalog")), **_errors(503)},
    },
    ("GET", "/api/v1/requests"): {
        "summary": "List service requests, newest first",
        "tags": ["requests"],
        "parameters": _listing(REQUEST_STATES),
        "responses": {
            "200": _reply("the requests", _ref("ServiceRequestList")),
            **_errors(400, 503),
        },
    },
    ("POST", "/api/v1/requests"): _change(
        "Request a catalog item; the input is checked against its fields",
        "requests",
        "ServiceRequest",
        body=_body(_ref("NewServiceRequest")),
        status="201",
        path_id=False,
        errors=(400, 404, 413, 503),
    ),
    ("GET", "/api/v1/requests/{id}"): {
        "summary": "One service request with its timeline",
        "tags": ["requests"],
        "parameters": [_ID],
        "responses": {
            "200": _reply("the request", _ref("ServiceRequestDetail")),
            **_errors(400, 404, 503),
        },
    },
    **{
        ("POST", f"/api/v1/requests/{{id}}/{action}"): _change(
            _REQUEST_SUMMARIES[action],
            "requests",
            "ServiceRequest",
            body=_body(_ref("Reason")) if action == "fail" else None,
        )
        for action in REQUEST_ACTIONS
    },
    ("GET", "/api/v1/access/grants"): {
        "summary": "List access grants, current and ended, newest first",
        "tags": ["access"],
        "parameters": [
            *_listing(GRANT_STATES),
            _query("subject", {**_NAME_FILTER, "maxLength": MAX_SUBJECT}, "only theirs"),
            _query("role", {**_NAME_FILTER, "maxLength": MAX_ROLE}, "only this role"),
        ],
        "responses": {"200": _reply("the grants", _ref("GrantList")), **_errors(400, 503)},
    },
    ("GET", _GRANT_PATH): {
        "summary": "One access grant",
        "tags": ["access"],
        "parameters": [_ID],
        "responses": {"200": _reply("the grant", _ref("Grant")), **_errors(400, 404, 503)},
    },
    ("POST", "/api/v1/access/requests"): {
        "summary": "Ask for a role for a subject; the policy allows, denies or asks for "
        "approval, and the audit log records its word",
        "tags": ["access"],
        "requestBody": _body(_ref("NewAccessRequest")),
        "responses": {
            "200": _reply("the decision, and the grant unless denied", _ref("AccessDecision")),
            **_errors(400, 413, 503),
        },
    },
    ("POST", f"{_GRANT_PATH}/approve"): _change(
        "Approve a pending grant (the policy says who may, with which token role)",
        "access",
        "Grant",
        body=_body(_ref("Approval"), required=False),
    ),
    ("POST", f"{_GRANT_PATH}/reject"): _change(
        "Reject a pending grant; it ends as denied",
        "access",
        "Grant",
        body=_body(_ref("Rejection"), required=False),
    ),
    ("POST", "/api/v1/access/revoke"): {
        "summary": "Revoke a subject's grant of a role, or every grant of theirs (*)",
        "tags": ["access"],
        "requestBody": _body(_ref("Revoke")),
        "responses": {
            "200": _reply("the decision and the grants ending", _ref("Revocation")),
            **_errors(400, 413, 503),
        },
    },
    ("GET", "/api/v1/access/audit"): {
        "summary": "The access audit log, newest first",
        "tags": ["access"],
        "parameters": [
            _query("subject", {**_NAME_FILTER, "maxLength": MAX_SUBJECT}, "only theirs"),
            _query("role", {**_NAME_FILTER, "maxLength": MAX_ROLE}, "only this role (or *)"),
            _query("action", {"enum": list(AUDIT_ACTIONS)}, "only this action"),
            _query("since", _WHEN_QUERY, "from this time on"),
            _query("until", _WHEN_QUERY, "before this time"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "default 100"),
        ],
        "responses": {"200": _reply("the entries", _ref("AuditLog")), **_errors(400, 503)},
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
            "description": "Incidents, on-call, silences, maintenance windows, remediation "
            "runs, problems, known errors, service requests and access grants of one daemon. "
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
