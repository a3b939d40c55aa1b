"""The control API, ``/api/v1``: accounts' keys, domains, campaigns and their personalised messages.

Every route needs ``Authorization: Bearer <api key>``; an account only ever sees its own data
(anything else is a 404, the same as a missing id). Errors are JSON,
``{"error": {"code": "...", "message": "..."}}``, with a 4xx status for every bad request.

Campaign creation streams: the recipient list (JSON, or a CSV upload of any size up to the
configured limit) is read into a spool, the campaign's token range is allocated, the messages are
rendered and stored in the analytics store a batch at a time, and only then is the campaign
published to the edge. A failure on the way removes what was stored, so nothing is half-created.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError as AnalyticsUnreachable
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive

from shortcore import accounts, conversions, reports, routing, webhooks
from shortcore.accounts import Account
from shortcore.analytics import DATABASE, AnalyticsStore
from shortcore.campaigns import (
    CampaignError,
    CampaignRange,
    MessageBatches,
    prepare_template,
    rejection_report,
)
from shortcore.clickids import ClickIds, is_click_id
from shortcore.config import Settings
from shortcore.conversions import AccountWindows, Attribution
from shortcore.events import EVENT_VERSION, EventIds
from shortcore.events import STREAM_KEY as EVENTS_STREAM
from shortcore.openapi import openapi_document
from shortcore.phones import PhoneNormalizer
from shortcore.recipients import RecipientList, RecipientsError
from shortcore.routing import RoutingError
from shortcore.sink import SinkSettings, SinkStatus, run_sink
from shortcore.stats import (
    CLICK_FIELDS,
    CampaignNotFound,
    SqlError,
    campaign_stats,
    click_cursor,
    click_json,
    click_page,
    format_rows,
    run_sql,
)
from shortcore.store import AnyRedis
from shortcore.tokens import DEFAULT_TOKEN_LENGTH, TokenCodec
from shortcore.variants import (
    VariantError,
    VariantPlan,
    VariantSpec,
    parse_variants,
)
from shortcore.webhooks import WebhookService, WebhookSettings

# Rows per messages insert: chDB's memory for an insert grows with it (100,000 rows peaked ~180 MB
# higher than 25,000 at a million recipients), and smaller inserts cost little more time.
RENDER_BATCH: Final = 25_000
# Rows per query of the messages download: a 50,000-row page raised the server's peak memory by
# 40-130 MB, 25,000 by a few MB, at about the same speed.
MESSAGES_PAGE: Final = 25_000
MAX_JSON_BODY: Final = 64 * 1024 * 1024
REPORTED_REJECTIONS: Final = 100
_CAMPAIGN_ID = re.compile(r"^cmp_[0-9a-f]{16}$")


class ApiError(Exception):
    """Answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


@dataclass(slots=True)
class ControlState:
    settings: Settings
    redis: AnyRedis
    analytics: AnalyticsStore
    secret: bytes
    max_upload_bytes: int = 512 * 1024 * 1024
    #: ``SHORTCORE_ADMIN_KEY``: the operator's key for ``POST /api/v1/sql``; None = no SQL console.
    admin_key: str | None = None
    #: The sink running in this process, when it runs here (``shortcore serve``'s control process).
    sink_status: SinkStatus | None = None


def _state(request: Request) -> ControlState:
    state: ControlState = request.app.state.control
    return state


async def _account(request: Request) -> Account:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <api key>'")
    account = await accounts.authenticate(_state(request).redis, key.strip())
    if account is None:
        raise ApiError(401, "unauthorized", "the API key is not valid or was revoked")
    return account


# -- request bodies ----------------------------------------------------------------------------


class _BodyLimit:
    """Wraps ``receive`` so that a body over ``limit`` bytes ends the request with a 413, whether
    or not the client declared its length."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive, self._limit, self._seen = receive, limit, 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                raise ApiError(413, "payload_too_large", f"the request body is over {self._limit} bytes")
        return message


def _limited(request: Request, limit: int) -> Request:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, "payload_too_large", f"the request body is over {limit} bytes")
    return Request(request.scope, _BodyLimit(request.receive, limit))


async def _json_body(request: Request) -> dict[str, Any]:
    body = await _limited(request, MAX_JSON_BODY).body()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return data


def _opt(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        names = " or ".join(t.__name__ for t in _as_tuple(kind))
        raise ApiError(422, "invalid_field", f"'{name}' must be {names}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _time(data: Mapping[str, Any], name: str) -> float | None:
    """A time as ISO 8601 (with a zone) or Unix seconds."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError(422, "invalid_field", f"'{name}' must be an ISO 8601 time or Unix seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(422, "invalid_field", f"'{name}' is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise ApiError(422, "invalid_field", f"'{name}' needs a time zone (e.g. 2026-01-01T12:00:00Z)")
        seconds = parsed.timestamp()
    else:
        raise ApiError(422, "invalid_field", f"'{name}' must be an ISO 8601 time or Unix seconds")
    if not 0 < seconds < 32_503_680_000:  # year 3000
        raise ApiError(422, "invalid_field", f"'{name}' is out of range")
    return seconds


def _utm(value: Any, campaign_name: str) -> dict[str, str] | None:
    """``true`` for the usual values, an object for your own, ``false``/absent for none."""
    if value is None or value is False:
        return None
    if value is True:
        return {"utm_source": "shortcore", "utm_medium": "sms", "utm_campaign": campaign_name}
    if (
        isinstance(value, dict)
        and len(value) <= 20
        and all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 64 and len(v) <= 256 for k, v in value.items()
        )
    ):
        return {k if k.startswith("utm_") else f"utm_{k}": v for k, v in value.items()}
    raise ApiError(422, "invalid_field", "'utm' must be true, false, or an object of up to 20 string values")


# -- domains ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ShortDomain:
    host: str
    base_url: str
    token_length: int


async def _domain_for(state: ControlState, account: Account, requested: str | None) -> _ShortDomain:
    """The domain a campaign's links use: the one asked for (it must be the account's), else the
    account's default, else the deployment's ``SHORTCORE_BASE_URL``."""
    host = requested or account.default_domain
    if host:
        domain = await routing.get_domain(state.redis, host)
        if domain is None or domain.account != account.id:
            raise ApiError(422, "unknown_domain", f"the domain {host!r} is not one of this account's domains")
        return _ShortDomain(domain.host, f"https://{domain.host}", domain.token_length)
    base = state.settings.base_url
    if not base:
        raise ApiError(422, "no_domain", "register a domain first (POST /api/v1/domains) or set SHORTCORE_BASE_URL")
    host = routing.normalize_host(base.split("://", 1)[-1].split("/", 1)[0])
    known = await routing.get_domain(state.redis, host)
    length = known.token_length if known else DEFAULT_TOKEN_LENGTH
    return _ShortDomain(host, base.rstrip("/"), length)


async def create_domain(request: Request) -> Response:
    account = await _account(request)
    state = _state(request)
    data = await _json_body(request)
    host = _opt(data, "host", str)
    if not host or not re.fullmatch(r"[a-z0-9.-]{1,253}(:[0-9]{1,5})?", host.strip().lower()) or "." not in host:
        raise ApiError(422, "invalid_field", "'host' must be a domain name such as ul.example")
    existing = await routing.get_domain(state.redis, host)
    if existing is not None and existing.account != account.id:
        raise ApiError(409, "domain_taken", f"the domain {host!r} belongs to another account")
    try:
        domain = await routing.register_domain(
            state.redis,
            host,
            fallback_url=_opt(data, "fallback_url", str),
            token_length=_opt(data, "token_length", int, DEFAULT_TOKEN_LENGTH),
            account=account.id,
        )
    except (RoutingError, ValueError) as error:
        raise ApiError(422, "invalid_field", str(error)) from None
    if _opt(data, "default", bool, False) or account.default_domain is None:
        await accounts.save_account(state.redis, _replace_default_domain(account, domain.host))
    return JSONResponse(_domain_json(domain, default=True), status_code=201)


def _replace_default_domain(account: Account, host: str) -> Account:
    return Account(**{**_account_fields(account), "default_domain": host})


def _account_fields(account: Account) -> dict[str, Any]:
    return {name: getattr(account, name) for name in account.__dataclass_fields__}


def _domain_json(domain: routing.Domain, *, default: bool) -> dict[str, Any]:
    return {
        "host": domain.host,
        "fallback_url": domain.fallback_url,
        "token_length": domain.token_length,
        "default": default,
    }


async def list_domains(request: Request) -> Response:
    account = await _account(request)
    host = account.default_domain
    domain = await routing.get_domain(_state(request).redis, host) if host else None
    items = [_domain_json(domain, default=True)] if domain and domain.account == account.id else []
    return JSONResponse({"domains": items})


# -- keys -------------------------------------------------------------------------------------


async def create_key(request: Request) -> Response:
    account = await _account(request)
    key = await accounts.create_key(_state(request).redis, account.id)
    return JSONResponse({"id": key.key_id, "key": key.secret}, status_code=201)


async def list_keys(request: Request) -> Response:
    account = await _account(request)
    return JSONResponse({"keys": [{"id": k} for k in await accounts.list_keys(_state(request).redis, account.id)]})


async def revoke_key(request: Request) -> Response:
    account = await _account(request)
    if not await accounts.revoke_key(_state(request).redis, account.id, request.path_params["key_id"]):
        raise ApiError(404, "not_found", "no such key")
    return Response(status_code=204)


# -- campaigns --------------------------------------------------------------------------------


@dataclass(slots=True)
class _CampaignRequest:
    name: str
    text: object  # checked by prepare_template
    scheme: str
    only_last: bool
    domain: str | None
    utm: dict[str, str] | None
    click_param: bool
    sent_at: float | None
    expires_at: float | None
    default_region: str | None
    recipients_json: list[Any] | None
    recipients_csv: UploadFile | None
    variants: list[VariantSpec] | None = None


def _campaign_request(data: Mapping[str, Any], upload: UploadFile | None) -> _CampaignRequest:
    name = _opt(data, "name", str, "") or "untitled"
    if len(name) > 200:
        raise ApiError(422, "invalid_field", "'name' must be at most 200 characters")
    recipients = data.get("recipients")
    if upload is None and not isinstance(recipients, list):
        raise ApiError(422, "invalid_field", "'recipients' must be a JSON list, or upload a CSV file as 'recipients'")
    sent_at, expires_at = _time(data, "sent_at"), _time(data, "expires_at")
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC).timestamp():
        raise ApiError(422, "invalid_field", "'expires_at' is in the past")
    return _CampaignRequest(
        name=name,
        text=data.get("text"),
        scheme=_opt(data, "scheme", str, "keep"),
        only_last=_opt(data, "only_last", bool, False),
        domain=_opt(data, "domain", str),
        utm=_utm(data.get("utm"), name),
        click_param=_opt(data, "click_param", bool, True),
        sent_at=sent_at,
        expires_at=expires_at,
        default_region=_opt(data, "default_region", str),
        recipients_json=recipients if upload is None else None,
        recipients_csv=upload,
        variants=_variants(data),
    )


def _variants(data: Mapping[str, Any]) -> list[VariantSpec] | None:
    """``variants`` replaces ``text``: the first variant is the control (see shortcore.variants)."""
    if data.get("variants") is None:
        return None
    if data.get("text") not in (None, ""):
        raise ApiError(422, "invalid_field", "give either 'text' or 'variants' (the first variant is the control)")
    try:
        return parse_variants(data["variants"])
    except VariantError as error:
        raise ApiError(422, "invalid_variants", str(error)) from None


_BOOLEAN_FORM = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


async def _form_fields(request: Request) -> tuple[dict[str, Any], UploadFile | None]:
    limited = _limited(request, _state(request).max_upload_bytes)
    try:
        form = await limited.form(max_files=1, max_fields=30)
    except HTTPException as error:
        raise ApiError(400, "bad_form", str(error.detail)) from None
    try:
        return _form_data(form.multi_items())
    except ApiError:
        await form.close()
        raise


def _form_data(items: list[tuple[str, str | UploadFile]]) -> tuple[dict[str, Any], UploadFile]:
    data: dict[str, Any] = {}
    upload: UploadFile | None = None
    for key, value in items:
        if isinstance(value, UploadFile):
            if key != "recipients":
                raise ApiError(422, "invalid_field", f"unexpected file field {key!r}; upload the CSV as 'recipients'")
            upload = value
        elif key == "utm" and value.strip().startswith("{"):
            try:
                data[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise ApiError(422, "invalid_field", "'utm' is not valid JSON") from None
        elif key in ("only_last", "click_param", "utm"):
            if value.strip().lower() not in _BOOLEAN_FORM:
                raise ApiError(422, "invalid_field", f"'{key}' must be true or false")
            data[key] = _BOOLEAN_FORM[value.strip().lower()]
        else:
            data[key] = value
    if upload is None:
        raise ApiError(422, "invalid_field", "upload the recipients as a CSV file field named 'recipients'")
    return data, upload


async def create_campaign(request: Request) -> Response:
    account = await _account(request)
    state = _state(request)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        data, upload = await _form_fields(request)
    elif content_type in ("application/json", ""):
        data, upload = await _json_body(request), None
    else:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    try:
        created, _ = await _create_campaign(state, account, data, upload)
        return JSONResponse(created, status_code=201)
    finally:
        if upload is not None:
            await upload.close()


async def send_message(request: Request) -> Response:
    """One transactional message: a campaign of one recipient, answered with its message row."""
    account = await _account(request)
    data = await _json_body(request)
    to = data.pop("to", None)
    if not isinstance(to, str) or not to.strip():
        raise ApiError(422, "invalid_field", "'to' must be the recipient's phone number")
    recipient_id = data.pop("id", None)
    if recipient_id is not None and not isinstance(recipient_id, str | int):
        raise ApiError(422, "invalid_field", "'id' must be a string or an integer")
    data["recipients"] = [{"phone": to} if recipient_id is None else {"phone": to, "id": recipient_id}]
    data.setdefault("name", "transactional")
    state = _state(request)
    # One campaign per message: its routing data is swept after the retention (or its own
    # expiry), so Redis holds a window of messages, not every message ever sent.
    expires_at = _time(data, "expires_at")
    remove_at = expires_at if expires_at is not None else time.time() + state.settings.transactional_days * 86_400
    created, first = await _create_campaign(state, account, data, None, remove_at=remove_at)
    if first is None:  # _create_campaign refuses a campaign without a valid recipient
        raise ApiError(422, "invalid_field", "'to' is not a valid phone number")
    return JSONResponse({**first, "campaign_id": created["id"]}, status_code=201)


async def _create_campaign(
    state: ControlState,
    account: Account,
    data: dict[str, Any],
    upload: UploadFile | None,
    *,
    remove_at: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Creates a campaign; returns the creation summary and the first recipient's message row.
    With ``remove_at``, its routing data is swept from Redis after that time."""
    try:
        spec = _campaign_request(data, upload)
        plan = VariantPlan.prepare(spec.variants, spec.scheme, spec.only_last) if spec.variants else None
        template = (
            plan.control.template if plan else prepare_template(spec.text, scheme=spec.scheme, only_last=spec.only_last)
        )
        spool = RecipientList(
            spec.default_region or account.default_region,
            directory=str(state.settings.data_dir) if state.settings.data_dir.exists() else None,
        )
    except VariantError as error:
        raise ApiError(422, "invalid_variants", str(error)) from None
    except (CampaignError, ValueError) as error:
        raise ApiError(422, "invalid_field", str(error)) from None
    domain = await _domain_for(state, account, spec.domain)
    codec = TokenCodec(state.secret, domain.token_length)
    campaign_id = "cmp_" + secrets.token_hex(8)

    try:
        if spec.recipients_csv is not None:
            upload_file = spec.recipients_csv.file
            upload_file.seek(0)
            await asyncio.to_thread(spool.read_csv, upload_file)
        else:
            await asyncio.to_thread(spool.read_records, spec.recipients_json or [])
        if spool.recipients == 0:
            raise ApiError(
                422,
                "no_recipients",
                "no valid recipient in the list",
                invalid=rejection_report(spool.invalid()[:REPORTED_REJECTIONS]),
            )
        links = plan.slots if plan else len(template.destinations)
        try:
            seq_start = await routing.allocate_seqs(state.redis, spool.recipients * links)
        except RoutingError as error:
            raise ApiError(422, "invalid_field", str(error)) from None
        if seq_start + spool.recipients * links - 1 > codec.max_seq:
            raise ApiError(507, "token_space_exhausted", f"{domain.token_length}-character tokens are used up")
        sent_at = dt.datetime.fromtimestamp(spec.sent_at, dt.UTC) if spec.sent_at else None
        where = CampaignRange(campaign_id, account.id, domain.base_url, seq_start, sent_at)
        # One text or A/B variants: rendered in Rust straight into RowBinary (shortcore.campaigns).
        batches = plan.batches(codec, where) if plan else MessageBatches(template, codec, where)

        def store_messages(client: Client) -> None:
            for body in batches.chunks(spool, RENDER_BATCH):
                client.raw_insert(f"{DATABASE}.messages", batches.columns, insert_block=body, fmt="RowBinary")
            client.insert(
                f"{DATABASE}.campaigns",
                [
                    _campaign_row(
                        campaign_id,
                        account.id,
                        spec,
                        template.text,
                        domain.host,
                        seq_start,
                        spool.recipients,
                        template.destinations,
                        plan.json() if plan else "",
                        links,
                    )
                ],
                column_names=CAMPAIGN_COLUMNS,
            )

        try:
            await state.analytics.run(store_messages)
            await routing.register_campaign(
                state.redis,
                id=campaign_id,
                account=account.id,
                domain=domain.host,
                recipients=spool.recipients,
                destinations=template.destinations,
                utm=spec.utm,
                click_param=spec.click_param,
                sent_at=spec.sent_at,
                expires_at=spec.expires_at,
                token_length=domain.token_length,
                seq_start=seq_start,
                variants=plan.routes() if plan else (),
                variant_seed=plan.seed if plan else "",
                remove_at=remove_at,
            )
        except BaseException:
            await state.analytics.run(_delete_campaign_rows, campaign_id)
            raise
    except RecipientsError as error:
        raise ApiError(422, "invalid_recipients", str(error)) from None
    except RoutingError as error:
        raise ApiError(422, "invalid_field", str(error)) from None

    totals = batches.totals
    created = {
        "id": campaign_id,
        "name": spec.name,
        "domain": domain.host,
        "recipients": spool.recipients,
        "invalid": spool.invalid_count,
        "duplicates": spool.duplicate_count,
        "links": links,
        "messages": totals.messages,
        "segments": {
            "total": totals.segments,
            "without_shortening": totals.segments_before,
            "change": totals.segments - totals.segments_before,
        },
        "errors": {
            "invalid": rejection_report(spool.invalid()[:REPORTED_REJECTIONS]),
            "duplicates": rejection_report(spool.duplicates()[:REPORTED_REJECTIONS]),
        },
        "messages_url": f"/api/v1/campaigns/{campaign_id}/messages",
    }
    if plan is not None:
        created["variants"] = plan.summary(batches)
    first = batches.first_row()
    if first is not None:
        first.setdefault("variant", None)  # as the messages download says of a one-text campaign
    return created, first


CAMPAIGN_COLUMNS: Final = (
    "id", "account", "name", "text", "domain", "seq_start", "recipients", "links", "destinations", "utm",
    "click_param", "sent_at", "expires_at", "created_at", "version", "variants",
)  # fmt: skip


def _campaign_row(
    campaign_id: str,
    account: str,
    spec: _CampaignRequest,
    text: str,
    host: str,
    seq_start: int,
    recipients: int,
    destinations: list[str],
    variants: str,
    links: int,
) -> list[Any]:
    now = dt.datetime.now(dt.UTC)

    def when(seconds: float | None) -> dt.datetime | None:
        return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds is not None else None

    return [
        campaign_id, account, spec.name, text, host, seq_start, recipients, links, destinations,
        spec.utm or {}, spec.click_param, when(spec.sent_at), when(spec.expires_at), now, int(now.timestamp() * 1000),
        variants,
    ]  # fmt: skip


def _delete_campaign_rows(client: Client, campaign_id: str) -> None:
    for table in ("messages", "messages_by_phone", "campaigns"):
        column = "id" if table == "campaigns" else "campaign_id"
        client.command(
            f"DELETE FROM {DATABASE}.{table} WHERE {column} = %(id)s",
            parameters={"id": campaign_id},
        )


async def _owned_campaign(request: Request, account: Account) -> routing.Campaign:
    campaign_id = request.path_params["campaign_id"]
    if not _CAMPAIGN_ID.match(campaign_id):
        raise ApiError(404, "not_found", "no such campaign")
    raw = await _state(request).redis.get(routing.CAMPAIGN_KEY + campaign_id)
    campaign = routing.Campaign.from_json(raw) if raw is not None else None
    if campaign is None or campaign.account != account.id:
        raise ApiError(404, "not_found", "no such campaign")
    return campaign


def _campaign_json(campaign: routing.Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "domain": campaign.domain,
        "recipients": campaign.recipients,
        "links": campaign.n_links,
        "destinations": list(campaign.destinations),
        "utm": dict(campaign.utm),
        "click_param": campaign.click_param,
        "sent_at": campaign.sent_at,
        "expires_at": campaign.expires_at,
        "variants": [
            {"name": v.name, "weight": v.weight, "destinations": list(v.destinations)} for v in campaign.variants
        ],
    }


async def get_campaign(request: Request) -> Response:
    account = await _account(request)
    return JSONResponse(_campaign_json(await _owned_campaign(request, account)))


async def list_campaigns(request: Request) -> Response:
    account = await _account(request)

    def query(client: Client) -> list[dict[str, Any]]:
        rows = client.query(
            f"SELECT id, name, domain, recipients, links, created_at FROM {DATABASE}.campaigns FINAL "
            "WHERE account = %(a)s ORDER BY created_at DESC LIMIT 1000",
            parameters={"a": account.id},
        ).named_results()
        return [{**row, "created_at": row["created_at"].isoformat()} for row in rows]

    return JSONResponse({"campaigns": await _state(request).analytics.run(query)})


MESSAGE_FIELDS: Final = (
    "phone", "id", "text", "encoding", "characters", "segments", "segments_before", "links", "variant",
)  # fmt: skip


def _download_format(request: Request) -> str:
    """``?format=`` of a rows download: ``jsonl`` (the default) or ``csv``."""
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise ApiError(400, "invalid_parameter", "'format' must be jsonl or csv")
    return fmt


async def campaign_messages(request: Request) -> Response:
    account = await _account(request)
    campaign = await _owned_campaign(request, account)
    fmt = _download_format(request)
    analytics = _state(request).analytics
    # ClickHouse writes the rows itself: no Python object per row on the way out.
    columns = MESSAGES_JSON_COLUMNS if fmt == "jsonl" else MESSAGES_CSV_COLUMNS
    output = "JSONEachRow" if fmt == "jsonl" else "CSV"

    def page(client: Client, start: int) -> bytes:
        return client.raw_query(
            f"SELECT {columns} FROM {DATABASE}.messages FINAL WHERE campaign_id = %(c)s "
            f"AND recipient_index >= %(start)s AND recipient_index < %(end)s ORDER BY recipient_index",
            parameters={"c": campaign.id, "start": start, "end": start + MESSAGES_PAGE},
            fmt=output,
            settings={"output_format_json_escape_forward_slashes": 0},
        )

    # The first page before the response starts: a store out of reach is then a 503, not a
    # 200 whose body breaks off.
    first = await analytics.run(page, 0) if campaign.recipients else b""

    async def rows() -> AsyncIterator[bytes]:
        if fmt == "csv":
            yield (",".join(MESSAGE_FIELDS) + "\n").encode()
        yield first
        for start in range(MESSAGES_PAGE, campaign.recipients, MESSAGES_PAGE):
            yield await analytics.run(page, start)

    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(rows(), media_type=media)


# Must match MESSAGE_FIELDS, in order.
MESSAGES_JSON_COLUMNS: Final = (
    "phone, nullIf(recipient_id, '') AS id, text, encoding, characters, segments, segments_before, "
    "short_urls AS links, nullIf(variant, '') AS variant"
)
MESSAGES_CSV_COLUMNS: Final = (
    "phone, recipient_id, text, encoding, characters, segments, segments_before, arrayStringConcat(short_urls, ' '), "
    "variant"
)


# -- conversions and webhooks ------------------------------------------------------------------

CONVERSION_FIELDS: Final = frozenset(
    {"click_id", "token", "phone", "phone_sha256", "event", "value", "currency", "order_id", "time"}
)
#: Order ids are remembered this long for idempotency.
ORDER_TTL: Final = 400 * 86_400
_event_ids: list[EventIds] = []


def _new_event_id(now: float) -> str:
    if not _event_ids:
        _event_ids.append(EventIds())
    return _event_ids[0].new(now)


async def _token_recipient(state: ControlState, account: Account, token: str) -> tuple[str, int, int]:
    """The campaign, recipient and link of one of the account's tokens."""
    codec = TokenCodec(state.secret, len(token)) if 6 <= len(token) <= 12 else None
    seq = codec.decode(token) if codec is not None else None
    campaign = await routing.RouteCache(state.redis).load(seq) if seq is not None else None
    if campaign is None or campaign.token_length != len(token) or seq is None:
        raise ApiError(422, "unknown_token", "'token' is not a token of this deployment")
    if campaign.account != account.id:
        raise ApiError(422, "foreign_token", "'token' belongs to another account")
    recipient, link = campaign.locate(seq)
    return campaign.id, recipient, link


async def _click_account(state: ControlState, click_id: str) -> str | None:
    def query(client: Client) -> list[Any]:
        return list(
            client.query(
                f"SELECT account FROM {DATABASE}.events WHERE event_id = %(id)s AND type = 'click' LIMIT 1",
                parameters={"id": click_id},
            ).result_rows
        )

    rows = await state.analytics.run(query)
    return str(rows[0][0]) if rows else None


async def record_conversion(request: Request) -> Response:
    """A server-side conversion: into the event stream, attributed by the sink."""
    account = await _account(request)
    state = _state(request)
    data = await _json_body(request)
    unknown = sorted(set(data) - CONVERSION_FIELDS)
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field {unknown[0]!r}")
    click_id, token = _opt(data, "click_id", str), _opt(data, "token", str)
    phone, digest = _opt(data, "phone", str), _opt(data, "phone_sha256", str)
    event_name = _opt(data, "event", str, "conversion")
    currency, order_id = _opt(data, "currency", str), _opt(data, "order_id", str)
    value = data.get("value")
    problem = conversions.field_error(event_name, value, currency, order_id)
    if problem:
        raise ApiError(422, "invalid_field", problem)
    click_event: str | None = None
    if click_id is not None:
        if not is_click_id(click_id):
            raise ApiError(422, "invalid_field", "'click_id' must be the sc_click value (<UUID>.<12 characters>)")
        click_event = ClickIds(state.secret).event_id(click_id)
        if click_event is None:
            raise ApiError(422, "forged_click", "'click_id' was not issued by this deployment (altered or made up)")
    if digest is not None:
        digest = digest.lower()
        if not conversions.is_phone_hash(digest):
            raise ApiError(422, "invalid_field", "'phone_sha256' must be the hex SHA-256 of the E.164 number")
    if phone is not None:
        try:
            digest = conversions.phone_hash(PhoneNormalizer(account.default_region).normalize(phone))
        except ValueError:
            raise ApiError(422, "invalid_field", "'phone' is not a valid phone number") from None
    now = dt.datetime.now(dt.UTC).timestamp()
    at = _time(data, "time") or now
    if at > now + 300 or at < now - 90 * 86_400:
        raise ApiError(422, "invalid_field", "'time' must be within the last 90 days")
    via: tuple[str, int, int] | None = None
    if token is not None:
        via = await _token_recipient(state, account, token)
    if click_event is not None:
        owner = await _click_account(state, click_event)
        if owner is not None and owner != account.id:
            raise ApiError(422, "foreign_click", "'click_id' is a click of another account")
    event_id = _new_event_id(now)
    if order_id:
        order_key = f"sc:order:{account.id}:{hashlib.sha256(order_id.encode()).hexdigest()}"
        if not await state.redis.set(order_key, event_id, nx=True, ex=ORDER_TTL):
            first = await state.redis.get(order_key)
            first_id = first.decode() if isinstance(first, bytes) else str(first)
            return JSONResponse({"id": first_id, "status": "duplicate", "order_id": order_id})
    event = {
        "v": EVENT_VERSION,
        "event_id": event_id,
        "time": int(at * 1000),
        "type": "conversion",
        "source": "api",
        "outcome": "unattributed",
        "account": account.id,
        "campaign_id": "",
        "recipient_index": -1,
        "link_index": -1,
        "class": "human",
        "reason": "api",
        "click_id": click_id or "",
        "token": token or "",
        "via_campaign": via[0] if via else "",
        "via_recipient": via[1] if via else -1,
        "phone_hash": digest or "",
        "event_name": event_name,
        "value": float(value) if value is not None else None,
        "currency": currency or "",
        "order_id": order_id or "",
    }
    await state.redis.xadd(EVENTS_STREAM, {"e": orjson.dumps(event)})
    return JSONResponse({"id": event_id, "status": "accepted", "order_id": order_id}, status_code=202)


async def conversion_tag(request: Request) -> Response:
    account = await _account(request)
    state = _state(request)
    tag = conversions.conversion_tag(state.secret, account.id)
    base = (state.settings.base_url or "").rstrip("/")
    return JSONResponse({"tag": tag, "pixel_url": f"{base}/c_t?cid={tag}", "script_url": f"{base}/c_t.js"})


def _webhooks(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhooks
    return service


async def create_webhook(request: Request) -> Response:
    account = await _account(request)
    data = await _json_body(request)
    unknown = sorted(set(data) - {"url", "events", "batch_size"})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field {unknown[0]!r}")
    service = _webhooks(request)
    try:
        endpoint = await webhooks.create_endpoint(
            service.redis,
            service.sender.guard,
            account.id,
            data.get("url"),
            data.get("events"),
            data.get("batch_size", 1),
        )
    except webhooks.TargetRefused as error:
        raise ApiError(422, "target_refused", str(error)) from None
    except webhooks.WebhookError as error:
        raise ApiError(422, "invalid_field", str(error)) from None
    service.sender.wake()
    return JSONResponse({**endpoint.public(), "secret": endpoint.secret}, status_code=201)


async def list_webhooks(request: Request) -> Response:
    account = await _account(request)
    found = await webhooks.list_endpoints(_state(request).redis, account.id)
    return JSONResponse({"webhooks": [e.public() for e in found]})


async def delete_webhook(request: Request) -> Response:
    account = await _account(request)
    if not await webhooks.delete_endpoint(_state(request).redis, account.id, request.path_params["webhook_id"]):
        raise ApiError(404, "not_found", "no such webhook")
    return Response(status_code=204)


async def rotate_webhook_secret(request: Request) -> Response:
    account = await _account(request)
    # An empty body is fine: the default grace period.
    empty = request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers
    data = {} if empty else await _json_body(request)
    unknown = sorted(set(data) - {"grace_seconds"})
    if unknown:
        raise ApiError(422, "unknown_field", f"unknown field {unknown[0]!r}")
    service = _webhooks(request)
    grace = data.get("grace_seconds", webhooks.DEFAULT_GRACE_SECONDS)
    try:
        endpoint = await webhooks.rotate_secret(service.redis, account.id, request.path_params["webhook_id"], grace)
    except webhooks.WebhookError as error:
        raise ApiError(422, "invalid_field", str(error)) from None
    if endpoint is None:
        raise ApiError(404, "not_found", "no such webhook")
    return JSONResponse({**endpoint.public(), "secret": endpoint.secret})


async def list_dead_letters(request: Request) -> Response:
    account = await _account(request)
    raw_limit = request.query_params.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise ApiError(400, "invalid_parameter", "'limit' must be from 1 to 1000")
    items = await _webhooks(request).sender.outbox.dead(account.id, int(raw_limit))
    return JSONResponse({"dead_letters": items})


async def replay_dead_letters(request: Request) -> Response:
    account = await _account(request)
    data = await _json_body(request)
    ids = data.get("ids")
    if ids is not None and (
        not isinstance(ids, list) or len(ids) > 10_000 or not all(isinstance(i, str) and i for i in ids)
    ):
        raise ApiError(422, "invalid_field", "'ids' must be a list of dead-letter ids (or absent for all)")
    service = _webhooks(request)
    replayed = await service.sender.outbox.replay(account.id, ids)
    service.sender.wake()
    return JSONResponse({"replayed": replayed})


def _csv_line(values: tuple[Any, ...]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return out.getvalue().encode()


# -- analytics ----------------------------------------------------------------------------------


async def campaign_stats_route(request: Request) -> Response:
    account = await _account(request)
    campaign = await _owned_campaign(request, account)
    try:
        stats = await _state(request).analytics.run(campaign_stats, campaign.id)
    except CampaignNotFound:
        raise ApiError(404, "not_found", "no such campaign") from None
    return JSONResponse(stats, headers={"cache-control": "no-store"})


async def report_link(request: Request) -> Response:
    """A signed, expiring URL of the campaign's report page, to open in a browser or share."""
    account = await _account(request)
    campaign = await _owned_campaign(request, account)
    raw_ttl = request.query_params.get("ttl", str(reports.DEFAULT_TTL))
    if not raw_ttl.isdigit() or not reports.MIN_TTL <= int(raw_ttl) <= reports.MAX_TTL:
        raise ApiError(400, "invalid_parameter", f"'ttl' must be from {reports.MIN_TTL} to {reports.MAX_TTL} seconds")
    expires = int(dt.datetime.now(dt.UTC).timestamp()) + int(raw_ttl)
    query = reports.link_query(_state(request).secret, account.id, campaign.id, expires)
    url = f"{str(request.base_url).rstrip('/')}/reports/campaigns/{campaign.id}?{query}"
    return JSONResponse({"url": url, "expires_at": expires}, headers={"cache-control": "no-store"})


def _html(status: int, body: str) -> Response:
    return Response(body, status, media_type="text/html; charset=utf-8", headers=reports.PAGE_HEADERS)


async def report_page(request: Request) -> Response:
    """``GET /reports/campaigns/{id}``: with ``Authorization: Bearer <api key>`` or a signed link
    (``?exp=&sig=``); HTML pages for every answer, 401 or 404 without the right credential."""
    state = _state(request)
    campaign_id = request.path_params["campaign_id"]
    missing = _html(404, reports.error_page("Report not found", "There is no such campaign report."))
    header = request.headers.get("authorization", "")
    signature = request.query_params.get("sig")
    if not header and signature is None:
        message = "Open this page through a report link (GET /api/v1/campaigns/{id}/report-link)."
        return _html(401, reports.error_page("Sign-in needed", message))
    raw = await state.redis.get(routing.CAMPAIGN_KEY + campaign_id) if _CAMPAIGN_ID.match(campaign_id) else None
    campaign = routing.Campaign.from_json(raw) if raw is not None else None
    if header:
        try:
            account = await _account(request)
        except ApiError as error:
            return _html(401, reports.error_page("Sign-in needed", error.message))
        if campaign is None or campaign.account != account.id:
            return missing
    else:
        if campaign is None:
            return missing
        problem = reports.check(
            state.secret,
            campaign.account,
            campaign.id,
            request.query_params.get("exp", ""),
            signature or "",
            dt.datetime.now(dt.UTC).timestamp(),
        )
        if problem is not None:
            return _html(401, reports.error_page("Report link refused", problem))
    try:
        stats = await state.analytics.run(campaign_stats, campaign.id)
    except CampaignNotFound:
        return missing
    return _html(200, reports.render_report(stats))


async def campaign_clicks(request: Request) -> Response:
    account = await _account(request)
    campaign = await _owned_campaign(request, account)
    fmt = _download_format(request)
    analytics = _state(request).analytics

    # The first page before the response starts: a store out of reach is then a 503, not a
    # 200 whose body breaks off.
    first = await analytics.run(click_page, campaign.id, None)

    async def rows() -> AsyncIterator[bytes]:
        if fmt == "csv":
            yield _csv_line(CLICK_FIELDS)
        page = first
        while page:
            if fmt == "jsonl":
                yield b"".join(orjson.dumps(click_json(row)) + b"\n" for row in page)
            else:
                yield b"".join(_csv_line(tuple(click_json(row).values())) for row in page)
            page = await analytics.run(click_page, campaign.id, click_cursor(page[-1]))

    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(rows(), media_type=media)


async def sql_console(request: Request) -> Response:
    """Read-only SQL over the whole analytics store: an operator's tool, so it takes the
    deployment's admin key (``SHORTCORE_ADMIN_KEY``), not an account's API key."""
    state = _state(request)
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if state.admin_key is None:
        raise ApiError(403, "forbidden", "the SQL console is off: set SHORTCORE_ADMIN_KEY on the server")
    if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip().encode(), state.admin_key.encode()):
        raise ApiError(401, "unauthorized", "the SQL console needs 'Authorization: Bearer <admin key>'")
    data = await _json_body(request)
    query = _opt(data, "query", str)
    fmt = _opt(data, "format", str, "json")
    if not query:
        raise ApiError(422, "invalid_field", "'query' is required")
    if fmt not in ("json", "jsonl", "csv", "table"):
        raise ApiError(422, "invalid_field", "'format' must be json, jsonl, csv or table")
    try:
        columns, rows = await state.analytics.run_readonly(run_sql, query)
    except SqlError as error:
        raise ApiError(400, "invalid_query", str(error)) from None
    if fmt == "json":
        return JSONResponse({"columns": columns, "rows": orjson.loads(orjson.dumps(rows, default=str))})
    media = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "table": "text/plain; charset=utf-8"}
    return Response(format_rows(columns, rows, fmt), media_type=media[fmt])


# -- the app ----------------------------------------------------------------------------------


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def healthz(request: Request) -> Response:
    """Liveness, and the sink when it runs in this process: its figures, whether it works or
    stands by, and which sink holds the lease (see :mod:`shortcore.sinklease`)."""
    state: ControlState = request.app.state.control
    sink = state.sink_status.snapshot() if state.sink_status is not None else None
    return JSONResponse({"status": "ok", "sink": sink}, headers={"cache-control": "no-store"})


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Turns ApiError and store outages into the spec's error shape."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error.status, error.code, error.message, **error.extra)
        except (RedisError, ConnectionError, OSError):
            return error_response(503, "store_unavailable", "the hot store is unreachable; try again shortly")
        except AnalyticsUnreachable:  # a ClickHouse server (http://) down or out of reach
            return error_response(503, "store_unavailable", "the analytics store is unreachable; try again shortly")

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def _guarded_page(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Store outages on a page for people: an HTML 503, not JSON."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (RedisError, ConnectionError, OSError, AnalyticsUnreachable):
            return _html(503, reports.error_page("Try again shortly", "The report's data store is unreachable."))

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


ROUTES: Final = (
    ("/api/v1/campaigns", create_campaign, ["POST"]),
    ("/api/v1/campaigns", list_campaigns, ["GET"]),
    ("/api/v1/campaigns/{campaign_id}", get_campaign, ["GET"]),
    ("/api/v1/campaigns/{campaign_id}/messages", campaign_messages, ["GET"]),
    ("/api/v1/messages", send_message, ["POST"]),
    ("/api/v1/campaigns/{campaign_id}/stats", campaign_stats_route, ["GET"]),
    ("/api/v1/campaigns/{campaign_id}/clicks", campaign_clicks, ["GET"]),
    ("/api/v1/campaigns/{campaign_id}/report-link", report_link, ["GET"]),
    ("/api/v1/sql", sql_console, ["POST"]),
    ("/api/v1/domains", create_domain, ["POST"]),
    ("/api/v1/domains", list_domains, ["GET"]),
    ("/api/v1/keys", create_key, ["POST"]),
    ("/api/v1/keys", list_keys, ["GET"]),
    ("/api/v1/keys/{key_id}", revoke_key, ["DELETE"]),
    ("/api/v1/conversions", record_conversion, ["POST"]),
    ("/api/v1/conversions/tag", conversion_tag, ["GET"]),
    ("/api/v1/webhooks", create_webhook, ["POST"]),
    ("/api/v1/webhooks", list_webhooks, ["GET"]),
    ("/api/v1/webhooks/dead-letters", list_dead_letters, ["GET"]),
    ("/api/v1/webhooks/dead-letters/replay", replay_dead_letters, ["POST"]),
    ("/api/v1/webhooks/{webhook_id}", delete_webhook, ["DELETE"]),
    ("/api/v1/webhooks/{webhook_id}/rotate-secret", rotate_webhook_secret, ["POST"]),
)


def control_routes() -> list[Route]:
    routes = [Route(path, _guarded(handler), methods=methods) for path, handler, methods in ROUTES]
    routes.append(Route("/reports/campaigns/{campaign_id}", _guarded_page(report_page), methods=["GET"]))
    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    routes.append(Route("/healthz", healthz, methods=["GET"]))
    return routes


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
    return error_response(status, code, str(getattr(exc, "detail", "not found")))


def create_control_app(
    settings: Settings,
    *,
    redis: AnyRedis | None = None,
    analytics: AnalyticsStore | None = None,
    max_upload_bytes: int = 512 * 1024 * 1024,
    admin_key: str | None = None,
    sink: SinkSettings | None = None,
    webhook_settings: WebhookSettings | None = None,
    send_webhooks: bool = False,
) -> Starlette:
    """The control API. Resources are made in the lifespan unless given (tests give them).

    With ``sink``, the event sink runs in this process too, on the same analytics store: with
    chDB only one process may open the data directory, so the process that serves this API is
    the one that writes the events. It attributes conversions (:mod:`shortcore.conversions`) and
    hands every inserted batch to the webhook outbox. With ``send_webhooks``, the webhook sender
    runs here too (``shortcore serve``'s control process)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from shortcore.store import connect

        own_redis = redis is None
        own_analytics = analytics is None
        if settings.redis_url is None and own_redis:
            raise RuntimeError("create_control_app needs a Redis URL or client")
        client = redis if redis is not None else connect(settings.redis_url or "")
        store = analytics if analytics is not None else AnalyticsStore.open(settings.effective_clickhouse_url)
        state = ControlState(settings, client, store, settings.token_secret(), max_upload_bytes, admin_key)
        app.state.control = state
        hooks = WebhookService(client, store, webhook_settings or WebhookSettings(), ClickIds(state.secret))
        app.state.webhooks = hooks
        stop = asyncio.Event()
        sink_task: asyncio.Task[SinkStatus] | None = None
        if sink is not None:
            state.sink_status = SinkStatus()
            attribution = Attribution(state.secret, AccountWindows(client, asyncio.get_running_loop()))
            sink_task = asyncio.create_task(
                run_sink(
                    sink,
                    client,
                    store,
                    stop,
                    state.sink_status,
                    attribution=attribution,
                    after_insert=hooks.after_insert,
                ),
                name="shortcore-sink",
            )
        sender = asyncio.create_task(hooks.run(stop), name="shortcore-webhooks") if send_webhooks else None
        sweeper = asyncio.create_task(routing.sweep_forever(client, stop), name="shortcore-routing-sweeper")
        try:
            yield
        finally:
            stop.set()
            await sweeper
            if sink_task is not None:
                await sink_task
            if sender is not None:
                await sender
            if own_analytics:
                store.close()
            if own_redis:
                await client.aclose()

    return Starlette(
        routes=control_routes(),
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_found},
    )


def app_from_env() -> Starlette:
    """The control app configured from ``SHORTCORE_*`` (for ``uvicorn --factory``), with the
    event sink unless ``SHORTCORE_SINK=off`` (another process runs it), and the webhook sender."""
    import os

    off = os.environ.get("SHORTCORE_SINK", "").lower() in ("0", "off", "false", "no")
    sink = None if off else SinkSettings.from_env()
    return create_control_app(
        Settings.from_env(),
        admin_key=os.environ.get("SHORTCORE_ADMIN_KEY") or None,
        sink=sink,
        webhook_settings=WebhookSettings.from_env(),
        send_webhooks=True,
    )
