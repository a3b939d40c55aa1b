"""Conversions: the account's conversion tag, the checks every conversion goes through, the
``/c_t.js`` script, and attribution, which the sink runs on each batch before it goes in.

Where a conversion comes from:

* the pixel ``GET /c_t?cid=<tag>…`` (written by the edge, type ``conversion``, no account): the
  tag names the account, the ``click`` parameter or the ``sc_click`` cookie the click;
* ``POST /api/v1/conversions`` (written by the control API, account set): a click id, a token
  (resolved by the API to ``via_campaign``/``via_recipient``), or the customer's phone number as
  the SHA-256 of its E.164 form (``phone_hash``).

Attribution happens at ingest, on the analytics thread, in :meth:`Attribution.attribute`: the
identifier gives a recipient (the click's recipient, the token's, or every message sent to that
phone by the account), the recipient gives a phone number, and the conversion is credited to the
most recent human click on a link sent to that phone by the same account within the account's
attribution window (default 30 days) before the conversion. No such click: the last message sent
to that phone within the view-through window (default 24 hours) gets it as a view-through. The
outcome is kept in the event's ``outcome`` column (:data:`OUTCOMES`); only ``click`` and ``view``
are credited to a campaign, and ``unattributed`` counts for the account alone. The same
``(account, order_id)`` counts once: later ones are stored with outcome ``duplicate``.

Nothing is dropped: a conversion with an unknown tag, a click of another account, or fields out
of range is stored with an outcome that says so, credited to nobody.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from clickhouse_connect.driver.client import Client

from shortcore.accounts import get_account
from shortcore.analytics import DATABASE
from shortcore.clickids import ClickIds
from shortcore.store import AnyRedis

log = logging.getLogger(__name__)

#: Credited to a campaign: a human click, or a message seen (view-through).
CREDITED: Final = ("click", "view")
#: Counted as conversions of the account (``unattributed``: no click or message found).
COUNTED: Final = (*CREDITED, "unattributed")
#: Every outcome a conversion event can end with.
OUTCOMES: Final = (
    *COUNTED,
    "duplicate",  # the account already has a conversion with this order id
    "foreign-click",  # the click id names another account's click
    "unknown-tag",  # the pixel's tag is not any account's
    "no-cid",  # the pixel came without a tag
    "invalid",  # a field is out of range (negative value, bad currency…)
)

MAX_VALUE: Final = 1e12
MAX_EVENT_NAME: Final = 64
MAX_ORDER_ID: Final = 128
DEFAULT_ATTRIBUTION_DAYS: Final = 30
DEFAULT_VIEW_THROUGH_HOURS: Final = 24

_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:/ -]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TAG = re.compile(r"ct_([0-9a-f]{16})([0-9a-f]{16})")
_ACCOUNT = re.compile(r"acc_([0-9a-f]{16})")


# ---------------------------------------------------------------------------------------------
# The conversion tag


def conversion_tag(secret: bytes, account: str) -> str:
    """The account's conversion tag, ``ct_<account><mac>``: public (it sits in the customer's
    pages) and self-checking, so neither the edge nor the sink needs a lookup to trust it."""
    found = _ACCOUNT.fullmatch(account)
    if found is None:
        raise ValueError(f"not an account id: {account!r}")
    return f"ct_{found.group(1)}{_tag_mac(secret, account)}"


def tag_account(secret: bytes, tag: str) -> str | None:
    """The account a tag belongs to, or None for a tag no account has (made up, or mistyped)."""
    found = _TAG.fullmatch(tag) if isinstance(tag, str) else None
    if found is None:
        return None
    account = f"acc_{found.group(1)}"
    return account if hmac.compare_digest(found.group(2), _tag_mac(secret, account)) else None


def _tag_mac(secret: bytes, account: str) -> str:
    return hmac.new(secret, b"conversion-tag:" + account.encode(), hashlib.sha256).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Checks shared by the API and the sink


def field_error(event_name: Any, value: Any, currency: Any, order_id: Any) -> str | None:
    """Why these conversion fields are unusable, or None. ``value`` must be a finite number from 0
    to 10^12; ``currency`` three capital letters (ISO 4217); empty strings and None mean absent."""
    if event_name not in (None, "") and (not isinstance(event_name, str) or not _EVENT_NAME.fullmatch(event_name)):
        return f"'event' must be 1 to {MAX_EVENT_NAME} letters, digits, spaces or _ . : / -"
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "'value' must be a number"
        if not math.isfinite(value) or value < 0 or value > MAX_VALUE:
            return f"'value' must be from 0 to {MAX_VALUE:.0e}"
    if currency not in (None, "") and (not isinstance(currency, str) or not _CURRENCY.fullmatch(currency)):
        return "'currency' must be an ISO 4217 code such as EUR"
    if order_id not in (None, "") and (
        not isinstance(order_id, str) or len(order_id) > MAX_ORDER_ID or not order_id.isprintable()
    ):
        return f"'order_id' must be a string of at most {MAX_ORDER_ID} printable characters"
    return None


def is_phone_hash(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def phone_hash(e164: str) -> str:
    """The SHA-256 (hex) of an E.164 number, the form senders who keep numbers private pass."""
    return hashlib.sha256(e164.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# /c_t.js

#: Served by the edge at ``/c_t.js``. On the landing page it keeps the ``sc_click`` parameter in a
#: first-party cookie (a year, SameSite=Lax) on the customer's own domain; ``shortcore(tag,
#: event, {value, currency, order_id})`` on any later page fires the pixel with that click id.
#: Its click id pattern must match ``shortcore.clickids.CLICK_ID_PATTERN``.
CONVERSION_SCRIPT: Final = (
    b"(function(w,d){var k='sc_click',"
    b"m=new RegExp('[?&]'+k+'=([0-9a-f-]{36}[.][0-9A-Za-z_-]{12})').exec(w.location.search),"
    b"s=d.currentScript,o=s&&s.src?s.src.replace(/\\/c_t\\.js.*$/,''):'';"
    b"if(m)d.cookie=k+'='+m[1]+';path=/;max-age=31536000;SameSite=Lax'+(w.location.protocol=='https:'?';Secure':'');"
    b"w.shortcore=function(t,e,p){var c=new RegExp('(?:^|; )'+k+'=([^;]*)').exec(d.cookie),"
    b"q='cid='+encodeURIComponent(t)+'&event='+encodeURIComponent(e||'conversion')+'&click='+(c?c[1]:'');"
    b"p=p||{};for(var n in p)q+='&'+n+'='+encodeURIComponent(p[n]);(new Image).src=o+'/c_t?'+q}})(window,document);\n"
)


# ---------------------------------------------------------------------------------------------
# Attribution


class EventRow(Protocol):
    """What attribution needs of the sink's rows: the parsed event and its bytes."""

    event: dict[str, Any]
    raw: bytes


@dataclass(frozen=True, slots=True)
class Windows:
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS
    view_through_hours: int = DEFAULT_VIEW_THROUGH_HOURS


@dataclass(slots=True)
class _Click:
    event_id: str
    account: str
    campaign_id: str
    recipient_index: int
    link_index: int
    time: int
    human: bool


class Attribution:
    """Credits conversions at ingest (see the module documentation). ``windows(account)`` gives an
    account's windows; it is called on the analytics thread and may block briefly.

    Without ``secret`` neither conversion tags nor click ids can be checked, so no pixel names an
    account and no click id names a click (a sink started without the deployment's settings)."""

    def __init__(self, secret: bytes | None = None, windows: Callable[[str], Windows] | None = None) -> None:
        self.secret = secret
        self.click_ids = ClickIds(secret) if secret is not None else None
        self.windows = windows or (lambda account: Windows())

    def named_click(self, candidate: Any) -> str | None:
        """The event id of the click a click id names, or None for a made-up or altered one."""
        return self.click_ids.event_id(candidate) if self.click_ids is not None else None

    def attribute(self, client: Client | None, rows: Sequence[EventRow]) -> None:
        conversions = [row for row in rows if row.event.get("type") == "conversion"]
        if not conversions:
            return
        batch_clicks = {
            row.event["event_id"]: _click_of(row.event)
            for row in rows
            if row.event.get("type") == "click" and row.event.get("campaign_id") and row.event.get("outcome") == "ok"
        }
        named: dict[int, list[str]] = {}
        for row in conversions:
            given = (row.event.get("click_param"), row.event.get("click_cookie"), row.event.get("click_id"))
            found = (self.named_click(c) for c in dict.fromkeys(given) if c)
            named[id(row)] = [event_id for event_id in found if event_id is not None]
        wanted = {c for ids in named.values() for c in ids if c not in batch_clicks}
        clicks = dict(batch_clicks)
        if wanted and client is not None:
            clicks.update(_load_clicks(client, sorted(wanted)))
        for row in conversions:
            self._attribute_one(client, row.event, named[id(row)], clicks, batch_clicks)
        _mark_duplicate_orders(client, conversions)
        for row in conversions:
            row.raw = orjson.dumps(row.event)

    def _attribute_one(
        self,
        client: Client | None,
        event: dict[str, Any],
        named_ids: list[str],
        clicks: dict[str, _Click],
        batch: dict[str, _Click],
    ) -> None:
        from_api = event.get("source") == "api"
        # Only a genuine click id is kept: a forged one names no click, here or in any report.
        event["click_id"] = named_ids[0] if named_ids else ""
        account = str(event.get("account") or "") if from_api else ""
        if not from_api:
            if not event.get("conversion_tag"):
                event["outcome"] = "no-cid"
                return
            account = (tag_account(self.secret, str(event["conversion_tag"])) or "") if self.secret else ""
            event["account"] = account
            if not account:
                event["outcome"] = "unknown-tag"
                return
        value = event.get("value")
        if isinstance(event.get("currency"), str):
            event["currency"] = event["currency"].upper()
        if event.get("value_raw") or field_error(event.get("event_name"), value, event.get("currency"), None):
            event["outcome"] = "invalid"
            return
        event["outcome"] = "unattributed"
        event["campaign_id"], event["recipient_index"], event["link_index"] = "", -1, -1
        # Which recipient: the click named (parameter first, then cookie), the token, the phone.
        recipients: list[tuple[str, int]] = []
        phone: str | None = None
        foreign = False
        named: _Click | None = None
        for candidate in named_ids:
            click = clicks.get(candidate)
            if click is None:
                continue
            if click.account != account:
                foreign = True
                continue
            recipients = [(click.campaign_id, click.recipient_index)]
            named = click
            break
        if not recipients and event.get("via_campaign"):
            recipients = [(str(event["via_campaign"]), int(event.get("via_recipient", -1)))]
        if client is None:
            self._credit_named(event, named)
            return
        if recipients:
            phone = _phone_of(client, *recipients[0])
        elif is_phone_hash(event.get("phone_hash")):
            phone = _phone_by_hash(client, account, str(event["phone_hash"]))
        if phone is None:
            if foreign and not recipients:
                event["outcome"] = "foreign-click"
            self._credit_named(event, named, self.windows(account))
            return
        windows = self.windows(account)
        now = int(event["time"])
        messages = _messages_of(client, account, phone)
        keys = {(campaign, index) for campaign, index, _ in messages}
        since = now - windows.attribution_days * 86_400_000
        best = _last_human_click(client, account, keys, since, now)
        for click in batch.values():
            if (
                click.human
                and click.account == account
                and (click.campaign_id, click.recipient_index) in keys
                and since < click.time <= now
                and (best is None or click.time > best.time)
            ):
                best = click
        if best is not None:
            _credit(event, "click", best.campaign_id, best.recipient_index, best.link_index, best.event_id)
            return
        view_since = now - windows.view_through_hours * 3_600_000
        seen = [(sent, campaign, index) for campaign, index, sent in messages if view_since < sent <= now]
        if seen:
            _, campaign, index = max(seen)
            _credit(event, "view", campaign, index, -1, "")

    @staticmethod
    def _credit_named(event: dict[str, Any], named: _Click | None, windows: Windows | None = None) -> None:
        """Without the recipient's messages (or without ClickHouse): the named click itself, if
        it was a person's and within the window."""
        days = (windows or Windows()).attribution_days
        now = int(event["time"])
        if named is not None and named.human and now - days * 86_400_000 < named.time <= now:
            _credit(event, "click", named.campaign_id, named.recipient_index, named.link_index, named.event_id)


def _credit(event: dict[str, Any], outcome: str, campaign: str, recipient: int, link: int, click_id: str) -> None:
    event["outcome"] = outcome
    event["campaign_id"], event["recipient_index"], event["link_index"] = campaign, recipient, link
    event["click_id"] = click_id


def _click_of(event: dict[str, Any]) -> _Click:
    return _Click(
        event["event_id"],
        str(event.get("account") or ""),
        str(event["campaign_id"]),
        int(event.get("recipient_index", -1)),
        int(event.get("link_index", -1)),
        int(event["time"]),
        event.get("class") == "human",
    )


def _load_clicks(client: Client, ids: list[str]) -> dict[str, _Click]:
    rows = client.query(
        f"SELECT toString(event_id), account, campaign_id, recipient_index, link_index, "
        f"toUnixTimestamp64Milli(time), class = 'human' FROM {DATABASE}.events FINAL "
        "WHERE event_id IN %(ids)s AND type = 'click' AND outcome = 'ok' AND campaign_id != ''",
        parameters={"ids": ids},
    ).result_rows
    return {row[0]: _Click(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), bool(row[6])) for row in rows}


def _phone_of(client: Client, campaign: str, recipient: int) -> str | None:
    rows = client.query(
        f"SELECT phone FROM {DATABASE}.messages WHERE campaign_id = %(c)s AND recipient_index = %(r)s LIMIT 1",
        parameters={"c": campaign, "r": max(recipient, 0)},
    ).result_rows
    return str(rows[0][0]) if rows and recipient >= 0 else None


#: The phone behind a SHA-256 within an account: a primary key lookup (analytics migration 2).
PHONE_BY_HASH_SQL: Final = (
    f"SELECT phone FROM {DATABASE}.messages_by_phone WHERE account = %(a)s AND phone_sha256 = unhex(%(h)s) LIMIT 1"
)


def _phone_by_hash(client: Client, account: str, digest: str) -> str | None:
    rows = client.query(PHONE_BY_HASH_SQL, parameters={"a": account, "h": digest}).result_rows
    return str(rows[0][0]) if rows else None


def _messages_of(client: Client, account: str, phone: str) -> list[tuple[str, int, int]]:
    """Every message the account sent to ``phone``: campaign, recipient index, sent time (ms)."""
    rows = client.query(
        f"SELECT campaign_id, recipient_index, toUnixTimestamp64Milli(sent) FROM {DATABASE}.messages_by_phone FINAL "
        "WHERE account = %(a)s AND phone_sha256 = SHA256(%(p)s) AND phone = %(p)s",
        parameters={"a": account, "p": phone},
    ).result_rows
    return [(str(c), int(r), int(t)) for c, r, t in rows]


def _last_human_click(client: Client, account: str, keys: set[tuple[str, int]], since: int, now: int) -> _Click | None:
    if not keys:
        return None
    campaigns = sorted({campaign for campaign, _ in keys})
    rows = client.query(
        f"SELECT toString(event_id), campaign_id, recipient_index, link_index, toUnixTimestamp64Milli(time) "
        f"FROM {DATABASE}.events FINAL WHERE campaign_id IN %(cs)s AND account = %(a)s AND type = 'click' "
        "AND outcome = 'ok' AND class = 'human' AND (campaign_id, recipient_index) IN %(keys)s "
        "AND time > fromUnixTimestamp64Milli(%(since)s, 'UTC') AND time <= fromUnixTimestamp64Milli(%(now)s, 'UTC') "
        "ORDER BY time DESC LIMIT 1",
        parameters={"cs": campaigns, "a": account, "keys": sorted(keys), "since": since, "now": now},
    ).result_rows
    if not rows:
        return None
    event_id, campaign, recipient, link, at = rows[0]
    return _Click(event_id, account, campaign, int(recipient), int(link), int(at), True)


def _mark_duplicate_orders(client: Client | None, conversions: Sequence[EventRow]) -> None:
    """The same order of the same account counts once: the first one stored keeps its outcome,
    later ones (in this batch or after an earlier one) become ``duplicate``. A replay of the same
    event is not a duplicate of itself."""
    counted = [row.event for row in conversions if row.event.get("outcome") in COUNTED and row.event.get("order_id")]
    if not counted:
        return
    seen: set[tuple[str, str]] = set()
    if client is not None:
        rows = client.query(
            f"SELECT DISTINCT account, order_id FROM {DATABASE}.events FINAL WHERE type = 'conversion' "
            "AND account IN %(a)s AND order_id IN %(o)s AND outcome IN %(counted)s AND event_id NOT IN %(ids)s",
            parameters={
                "a": sorted({str(e["account"]) for e in counted}),
                "o": sorted({str(e["order_id"]) for e in counted}),
                "counted": list(COUNTED),
                "ids": [e["event_id"] for e in counted],
            },
        ).result_rows
        seen = {(str(a), str(o)) for a, o in rows}
    for event in counted:
        key = (str(event["account"]), str(event["order_id"]))
        if key in seen:
            # Credited to nobody, so no figure that counts a campaign's conversions counts it.
            _credit(event, "duplicate", "", -1, -1, str(event.get("click_id") or ""))
        seen.add(key)


class AccountWindows:
    """``windows(account)`` for :class:`Attribution` from the accounts in Redis, cached for a
    minute. Called on the analytics thread; asks the event loop that owns ``redis``."""

    def __init__(self, redis: AnyRedis, loop: asyncio.AbstractEventLoop, ttl: float = 60.0) -> None:
        self.redis, self.loop, self.ttl = redis, loop, ttl
        self._cache: dict[str, tuple[float, Windows]] = {}

    def __call__(self, account: str) -> Windows:
        now = time.monotonic()
        hit = self._cache.get(account)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            found = asyncio.run_coroutine_threadsafe(get_account(self.redis, account), self.loop).result(2.0)
        except Exception as error:  # Redis down: the defaults, not a stuck sink
            log.warning("attribution windows of %s unknown, using the defaults: %s", account, error)
            found = None
        windows = Windows(found.attribution_days, found.view_through_hours) if found is not None else Windows()
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[account] = (now + self.ttl, windows)
        return windows
