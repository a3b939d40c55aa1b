"""The OpenAPI 3.1 document of the control API, served at ``/openapi.json``.

Written by hand next to the routes; ``tests/test_control.py`` checks that it is valid and that
its paths and methods are exactly the app's.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed request",
        401: "Missing or invalid API key",
        403: "Forbidden",
        404: "Not found (or another account's)",
        409: "Conflict",
        413: "Body too large",
        415: "Unsupported content type",
        422: "Invalid field",
        503: "A store is unreachable",
    }
    return {str(s): {"description": text[s], "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_CAMPAIGN_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 200},
    "text": {"type": "string", "maxLength": 1600, "description": "Message text with http(s):// or www. links"},
    "recipients": {
        "type": "array",
        "items": {
            "oneOf": [
                {"type": "string", "description": "A phone number"},
                {
                    "type": "object",
                    "required": ["phone"],
                    "properties": {"phone": {"type": "string"}, "id": {"type": ["string", "integer"]}},
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                },
            ]
        },
    },
    "sent_at": {"type": ["string", "number"], "description": "ISO 8601 with a zone, or Unix seconds"},
    "expires_at": {"type": ["string", "number"], "description": "ISO 8601 with a zone, or Unix seconds"},
    "domain": {"type": "string", "description": "One of the account's domains; default: the account's default"},
    "utm": {"oneOf": [{"type": "boolean"}, {"type": "object", "additionalProperties": {"type": "string"}}]},
    "click_param": {"type": "boolean", "default": True, "description": "Add sc_click=<click id> to redirects"},
    "scheme": {"type": "string", "enum": ["keep", "drop", "fit"], "default": "keep"},
    "only_last": {"type": "boolean", "default": False, "description": "Shorten only the last link"},
    "default_region": {"type": "string", "description": "Region for national numbers, e.g. DE"},
    "variants": {
        "type": "array",
        "minItems": 2,
        "maxItems": 26,
        "description": "A/B test, instead of 'text': each recipient gets one variant, drawn by weight from a keyed "
        "hash of the recipient's index; the first variant is the control. In a form: a JSON string.",
        "items": {
            "type": "object",
            "required": ["name", "text"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"},
                "text": {"type": "string", "maxLength": 1600},
                "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000000, "default": 1},
            },
        },
    },
}
# A campaign has either one text or variants.
_TEXT_OR_VARIANTS: list[dict[str, Any]] = [{"required": ["text"]}, {"required": ["variants"]}]

_REJECTION = {
    "type": "object",
    "properties": {"line": {"type": "integer"}, "value": {"type": "string"}, "reason": {"type": "string"}},
}


_FORMAT_PARAM: dict[str, Any] = {
    "name": "format",
    "in": "query",
    "schema": {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
}


def _rows(description: str) -> dict[str, Any]:
    """A download of rows as JSON lines or CSV (``?format=``)."""
    return {
        "description": description,
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}},
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    auth: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "shortcore control API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
                "CampaignCreated": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "domain": {"type": "string"},
                        "recipients": {"type": "integer"},
                        "invalid": {"type": "integer"},
                        "duplicates": {"type": "integer"},
                        "links": {"type": "integer"},
                        "messages": {"type": "integer"},
                        "segments": {
                            "type": "object",
                            "properties": {
                                "total": {"type": "integer"},
                                "without_shortening": {"type": "integer"},
                                "change": {"type": "integer"},
                            },
                        },
                        "errors": {
                            "type": "object",
                            "properties": {
                                "invalid": {"type": "array", "items": _REJECTION},
                                "duplicates": {"type": "array", "items": _REJECTION},
                            },
                        },
                        "messages_url": {"type": "string"},
                        "variants": {
                            "type": "array",
                            "description": "With variants only: messages per variant",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "weight": {"type": "number"},
                                    "links": {"type": "integer"},
                                    "messages": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
                "Campaign": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "domain": {"type": "string"},
                        "recipients": {"type": "integer"},
                        "links": {"type": "integer"},
                        "destinations": {"type": "array", "items": {"type": "string"}},
                        "utm": {"type": "object", "additionalProperties": {"type": "string"}},
                        "click_param": {"type": "boolean"},
                        "sent_at": {"type": ["number", "null"]},
                        "expires_at": {"type": ["number", "null"]},
                        "variants": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string"},
                                    "weight": {"type": "number"},
                                    "destinations": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
                "Message": {
                    "type": "object",
                    "properties": {
                        "phone": {"type": "string"},
                        "id": {"type": ["string", "null"]},
                        "text": {"type": "string"},
                        "encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]},
                        "characters": {"type": "integer"},
                        "segments": {"type": "integer"},
                        "segments_before": {"type": "integer"},
                        "links": {"type": "array", "items": {"type": "string"}},
                        "variant": {"type": ["string", "null"], "description": "The A/B variant, null without"},
                        "campaign_id": {"type": "string"},
                    },
                },
                "Domain": {
                    "type": "object",
                    "properties": {
                        "host": {"type": "string"},
                        "fallback_url": {"type": ["string", "null"]},
                        "token_length": {"type": "integer", "minimum": 6, "maximum": 12},
                        "default": {"type": "boolean"},
                    },
                },
            },
        },
        "paths": {
            "/api/v1/campaigns": {
                "post": {
                    "summary": "Create a campaign: one personalised message per recipient",
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["recipients"],
                                    "oneOf": _TEXT_OR_VARIANTS,
                                    "properties": _CAMPAIGN_FIELDS,
                                }
                            },
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["recipients"],
                                    "oneOf": _TEXT_OR_VARIANTS,
                                    "properties": {
                                        **{k: {"type": "string"} for k in _CAMPAIGN_FIELDS if k != "recipients"},
                                        "recipients": {
                                            "type": "string",
                                            "format": "binary",
                                            "description": (
                                                "CSV (RFC 4180, UTF-8) with a header row: phone, optional id, "
                                                "custom columns"
                                            ),
                                        },
                                    },
                                }
                            },
                        },
                    },
                    "responses": {
                        "201": _json({"$ref": "#/components/schemas/CampaignCreated"}, "Created"),
                        **_errors(400, 401, 413, 415, 422, 503),
                    },
                },
                "get": {
                    "summary": "The account's campaigns, newest first",
                    "security": auth,
                    "responses": {"200": _json({"type": "object"}), **_errors(401, 503)},
                },
            },
            "/api/v1/campaigns/{campaign_id}": {
                "get": {
                    "summary": "One campaign",
                    "security": auth,
                    "parameters": [
                        {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json({"$ref": "#/components/schemas/Campaign"}), **_errors(401, 404)},
                }
            },
            "/api/v1/campaigns/{campaign_id}/messages": {
                "get": {
                    "summary": "One row per recipient: phone, personalised text, encoding, segments, short links",
                    "security": auth,
                    "parameters": [
                        _path_param("campaign_id"),
                        _FORMAT_PARAM,
                    ],
                    "responses": {
                        "200": _rows("A stream of rows"),
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/api/v1/messages": {
                "post": {
                    "summary": "One transactional message for one recipient; answers its message row",
                    "description": (
                        "Its links resolve until its expires_at, else for SHORTCORE_TRANSACTIONAL_DAYS (90 days); "
                        "then its routing data is removed and they answer as unknown links."
                    ),
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["to"],
                                    "oneOf": _TEXT_OR_VARIANTS,
                                    "properties": {
                                        "to": {"type": "string", "description": "The recipient's phone number"},
                                        "id": {"type": ["string", "integer"]},
                                        **{k: v for k, v in _CAMPAIGN_FIELDS.items() if k != "recipients"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"$ref": "#/components/schemas/Message"}, "Created"),
                        **_errors(400, 401, 413, 422, 503),
                    },
                }
            },
            "/api/v1/domains": {
                "post": {
                    "summary": "Register a short domain for the account",
                    "security": auth,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["host"],
                                    "properties": {
                                        "host": {"type": "string"},
                                        "fallback_url": {"type": "string"},
                                        "token_length": {"type": "integer", "minimum": 6, "maximum": 12},
                                        "default": {"type": "boolean"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"$ref": "#/components/schemas/Domain"}, "Created"),
                        **_errors(400, 401, 409, 422),
                    },
                },
                "get": {
                    "summary": "The account's domains",
                    "security": auth,
                    "responses": {"200": _json({"type": "object"}), **_errors(401)},
                },
            },
            "/api/v1/keys": {
                "post": {
                    "summary": "Create another API key for the account (shown once)",
                    "security": auth,
                    "responses": {"201": _json({"type": "object"}, "Created"), **_errors(401)},
                },
                "get": {
                    "summary": "The ids of the account's keys",
                    "security": auth,
                    "responses": {"200": _json({"type": "object"}), **_errors(401)},
                },
            },
            "/api/v1/keys/{key_id}": {
                "delete": {
                    "summary": "Revoke a key",
                    "security": auth,
                    "parameters": [_path_param("key_id")],
                    "responses": {"204": {"description": "Revoked"}, **_errors(401, 404)},
                }
            },
            **_analytics_paths(auth),
            **_conversion_paths(auth),
        },
    }


_COUNTS = {
    name: {"type": "integer"} for name in ("human_clicks", "unique_clickers", "views", "bot_hits", "conversions")
}


def _analytics_paths(auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Stats, recorded requests and the SQL console (``shortcore.stats``; docs/analytics.md)."""
    stats = {
        "type": "object",
        "properties": {
            "campaign_id": {"type": "string"},
            "name": {"type": "string"},
            "sent_at": {"type": ["string", "null"]},
            "recipients": {"type": "integer"},
            "messages": {"type": "integer"},
            **_COUNTS,
            "click_through_rate": {"type": "number", "description": "Unique clickers over messages"},
            "preview_hits": {"type": "integer"},
            "viewed_not_clicked": {"type": "integer"},
            "clicked_after_view": {"type": "integer"},
            "bots_by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
            "conversion_value": {"type": "number"},
            "first_event": {"type": ["string", "null"]},
            "links": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"link_index": {"type": "integer"}, "destination": {"type": "string"}, **_COUNTS},
                },
            },
            "variants": {
                "type": "array",
                "description": "Per A/B variant (empty without variants); the first is the control",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "weight": {"type": "number"},
                        "text": {"type": "string"},
                        "messages": {"type": "integer"},
                        **_COUNTS,
                        "click_through_rate": {"type": "number"},
                        "conversion_value": {"type": "number"},
                        "conversion_rate": {"type": "number"},
                        "view_through_conversions": {"type": "integer"},
                        "links": {"type": "array", "items": {"type": "object"}},
                        "vs_control": {
                            "type": ["object", "null"],
                            "description": "Two-proportion z-test of the CTR against the control (docs/analytics.md)",
                            "properties": {
                                "ctr_difference": {"type": "number"},
                                "ci95": {"type": "array", "items": {"type": "number"}},
                                "z": {"type": ["number", "null"]},
                                "p_value": {"type": ["number", "null"]},
                                "p_value_adjusted": {"type": ["number", "null"]},
                                "significant": {"type": "boolean"},
                                "note": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "ab_test": {
                "type": ["object", "null"],
                "properties": {
                    "control": {"type": "string"},
                    "winner": {
                        "type": ["string", "null"],
                        "description": "Set only when the difference is significant",
                    },
                    "verdict": {"type": "string"},
                },
            },
            "timeline": {
                "type": "array",
                "items": {"type": "object", "properties": {"hour": {"type": "string"}, **_COUNTS}},
            },
        },
    }
    return {
        "/api/v1/campaigns/{campaign_id}/stats": {
            "get": {
                "summary": "Cumulative figures: clicks, unique clickers, CTR, views, bots, conversions, "
                "per link, by hour",
                "security": auth,
                "parameters": [_path_param("campaign_id")],
                "responses": {"200": _json(stats), **_errors(401, 404, 503)},
            }
        },
        "/api/v1/campaigns/{campaign_id}/report-link": {
            "get": {
                "summary": "A signed, expiring URL of the campaign's report page (no API key in it)",
                "security": auth,
                "parameters": [
                    _path_param("campaign_id"),
                    {
                        "name": "ttl",
                        "in": "query",
                        "description": "Seconds the link works",
                        "schema": {"type": "integer", "minimum": 60, "maximum": 7776000, "default": 604800},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"url": {"type": "string"}, "expires_at": {"type": "integer"}},
                        }
                    ),
                    **_errors(400, 401, 404),
                },
            }
        },
        "/reports/campaigns/{campaign_id}": {
            "get": {
                "summary": "The campaign report page for people (HTML): figures, timeline, links, A/B verdict",
                "description": "Opens with 'Authorization: Bearer <api key>' or with the exp and sig of a report "
                "link. Every answer is an HTML page; 401 without a valid credential, 404 for another account's "
                "campaign.",
                "security": [{"bearer": []}, {}],
                "parameters": [
                    _path_param("campaign_id"),
                    {"name": "exp", "in": "query", "schema": {"type": "integer"}},
                    {"name": "sig", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    status: {"description": text, "content": {"text/html": {"schema": {"type": "string"}}}}
                    for status, text in (
                        ("200", "The report"),
                        ("401", "No valid key or report link"),
                        ("404", "No such campaign (or another account's)"),
                        ("503", "A store is unreachable"),
                    )
                },
            }
        },
        "/api/v1/campaigns/{campaign_id}/clicks": {
            "get": {
                "summary": "Every recorded request and conversion: phone, time, class and reason, IP, browser, OS, "
                "device, country",
                "security": auth,
                "parameters": [
                    _path_param("campaign_id"),
                    _FORMAT_PARAM,
                ],
                "responses": {
                    "200": _rows("A stream of rows, oldest first"),
                    **_errors(400, 401, 404, 503),
                },
            }
        },
        "/api/v1/sql": {
            "post": {
                "summary": "Read-only SQL over the analytics store (operators: needs SHORTCORE_ADMIN_KEY)",
                "security": auth,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["query"],
                                "properties": {
                                    "query": {"type": "string"},
                                    "format": {"type": "string", "enum": ["json", "jsonl", "csv", "table"]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "rows": {"type": "array", "items": {"type": "array"}},
                            },
                        }
                    ),
                    **_errors(400, 401, 403, 422, 503),
                },
            }
        },
    }


_CONVERSION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "click_id": {
            "type": "string",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[.][0-9A-Za-z_-]{12}$",
            "description": "The sc_click value of the visit, as it was (<click event id>.<MAC>); "
            "one this deployment did not issue is refused (422 forged_click)",
        },
        "token": {"type": "string", "description": "The short link's token"},
        "phone": {"type": "string", "description": "The customer's phone number (E.164, or national)"},
        "phone_sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "SHA-256 of E.164"},
        "event": {"type": "string", "maxLength": 64, "default": "conversion"},
        "value": {"type": "number", "minimum": 0, "maximum": 1e12},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "order_id": {"type": "string", "maxLength": 128, "description": "Makes the call idempotent"},
        "time": {"type": ["string", "number"], "description": "When it happened (default: now)"},
    },
}

_WEBHOOK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string", "enum": ["click", "view", "bot", "conversion"]}},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000},
        "created_at": {"type": "number"},
        "secret": {"type": "string", "description": "Only in the answers to POST (create, rotate-secret)"},
        "previous_secret_expires_at": {
            "type": ["number", "null"],
            "description": "After a rotation: until when deliveries are signed with the previous secret too",
        },
    },
}


def _conversion_paths(auth: list[dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "/api/v1/conversions": {
            "post": {
                "summary": "Record a server-side conversion (attributed by the sink; idempotent on order_id)",
                "security": auth,
                "requestBody": {"required": True, "content": {"application/json": {"schema": _CONVERSION}}},
                "responses": {
                    "202": _json({"type": "object"}, "Accepted: attributed as it is stored"),
                    "200": _json({"type": "object"}, "This order was recorded before (status duplicate)"),
                    **_errors(400, 401, 413, 422),
                },
            }
        },
        "/api/v1/conversions/tag": {
            "get": {
                "summary": "The account's conversion tag, pixel and script URLs",
                "security": auth,
                "responses": {"200": _json({"type": "object"}), **_errors(401)},
            }
        },
        "/api/v1/webhooks": {
            "post": {
                "summary": "Register an endpoint for tracking events (the secret is shown once)",
                "security": auth,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["url"],
                                "properties": {k: _WEBHOOK["properties"][k] for k in ("url", "events", "batch_size")},
                            }
                        }
                    },
                },
                "responses": {"201": _json(_WEBHOOK, "Created"), **_errors(400, 401, 422)},
            },
            "get": {
                "summary": "The account's endpoints",
                "security": auth,
                "responses": {"200": _json({"type": "object"}), **_errors(401)},
            },
        },
        "/api/v1/webhooks/{webhook_id}": {
            "delete": {
                "summary": "Remove an endpoint",
                "security": auth,
                "parameters": [_path_param("webhook_id")],
                "responses": {"204": {"description": "Removed"}, **_errors(401, 404)},
            }
        },
        "/api/v1/webhooks/{webhook_id}/rotate-secret": {
            "post": {
                "summary": "Give an endpoint a new secret; deliveries carry a second v1= signature with the old "
                "one during the grace period",
                "security": auth,
                "parameters": [_path_param("webhook_id")],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "grace_seconds": {
                                        "type": "number",
                                        "minimum": 0,
                                        "maximum": 604800,
                                        "default": 86400,
                                        "description": "How long the old secret keeps signing (0: not at all)",
                                    }
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "200": _json(_WEBHOOK, "The endpoint with its new secret"),
                    **_errors(400, 401, 404, 422),
                },
            }
        },
        "/api/v1/webhooks/dead-letters": {
            "get": {
                "summary": "Deliveries given up after the retries, newest first",
                "security": auth,
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}}],
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401)},
            }
        },
        "/api/v1/webhooks/dead-letters/replay": {
            "post": {
                "summary": "Send dead deliveries again (the ones listed in 'ids', or all)",
                "security": auth,
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"ids": {"type": "array"}}}}
                    }
                },
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 422)},
            }
        },
    }
