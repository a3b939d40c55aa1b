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
}

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
                                    "required": ["text", "recipients"],
                                    "properties": _CAMPAIGN_FIELDS,
                                }
                            },
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["text", "recipients"],
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
                        **_errors(400, 401, 404),
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
                                    "required": ["to", "text"],
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
            "variants": {"type": "array", "items": {"type": "object"}},
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
                    **_errors(400, 401, 404),
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
                    **_errors(400, 401, 403, 422),
                },
            }
        },
    }


_CONVERSION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "click_id": {"type": "string", "format": "uuid", "description": "The sc_click value of the visit"},
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
        "secret": {"type": "string", "description": "Only in the answer to POST"},
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
