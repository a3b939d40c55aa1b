"""Webhooks: accounts' endpoints, the durable outbox in Redis, and the sender.

Events reach the outbox from the sink's output (:meth:`WebhookService.after_insert`, called with
each batch once it is in ClickHouse and before it is acknowledged): so a conversion is delivered
with its attribution, a click with the class the sequence rules gave it, and the edge never waits
for any of it. The sender runs in the control process beside the sink.

Keys in Redis (one hash tag, so the outbox works on Redis Cluster too):

``sc:webhooks``                     hash: endpoint id → endpoint JSON (with its secret)
``sc:webhooks:account:<account>``   set of the account's endpoint ids
``sc:{wh}:due``                     sorted set: delivery id → when it is due (Unix ms)
``sc:{wh}:item``                    hash: delivery id → meta JSON, a newline, the body
``sc:{wh}:dead:<account>``          hash: delivery id → the dead delivery (meta, newline, body)
``sc:{wh}:dead-order:<account>``    sorted set: delivery id → when it died (Unix ms)

At least once: a delivery is claimed by moving its due time one lease ahead (atomically, with
:data:`CLAIM_SCRIPT`), so a sender that dies mid-way leaves it to be claimed again. Every event
carries its ``id`` for the receiver to deduplicate. A failed attempt (no answer within the
timeout, a refused connection, any status but 2xx) is retried after an exponential backoff with
jitter; once a delivery is older than ``max_age`` (25 hours by default) it goes to the account's
dead-letter list, readable and replayable through ``/api/v1/webhooks/dead-letters``.

Signature: ``Shortcore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the
endpoint's secret, and a second ``v1=`` with the previous secret during the grace period after a
rotation (:func:`rotate_secret`); see ``docs/conversions.md`` for the receiving side.

Reclassified events: when a sequence rule of the sink turns an event already delivered into a bot
(``bot:sibling-burst``, ``bot:sweep``), the event goes once more, with ``"reclassified": true``, its
new ``revision`` and what it was (``previous``); see :meth:`WebhookService.after_insert`.

Targets that resolve to loopback, private, link-local or otherwise non-public addresses are
refused, when registered and again at every connection (the connection goes to the address that
was checked), unless ``SHORTCORE_WEBHOOK_ALLOW`` lists them (networks or host names).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import ipaddress
import itertools
import logging
import os
import random
import secrets
import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httptools
import orjson

from shortcore.analytics import DATABASE, AnalyticsStore
from shortcore.clickids import ClickIds
from shortcore.conversions import COUNTED
from shortcore.routing import CAMPAIGN_KEY, Campaign
from shortcore.store import AnyRedis

log = logging.getLogger(__name__)

ENDPOINTS_KEY: Final = "sc:webhooks"
ACCOUNT_ENDPOINTS_KEY: Final = "sc:webhooks:account:"
DUE_KEY: Final = "sc:{wh}:due"
ITEM_KEY: Final = "sc:{wh}:item"
DEAD_KEY: Final = "sc:{wh}:dead:"
DEAD_ORDER_KEY: Final = "sc:{wh}:dead-order:"

#: The event kinds an endpoint can ask for.
KINDS: Final = ("click", "view", "bot", "conversion")
MAX_BATCH: Final = 1000
MAX_ENDPOINTS: Final = 20
SIGNATURE_HEADER: Final = "Shortcore-Signature"
USER_AGENT: Final = "shortcore-webhooks/1"

CLAIM_SCRIPT: Final = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then return {} end
local out = {}
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
local items = redis.call('HMGET', KEYS[2], unpack(ids))
for i, id in ipairs(ids) do out[#out + 1] = id; out[#out + 1] = items[i] end
return out
"""


class WebhookError(ValueError):
    """An endpoint that cannot be registered; the message says why."""


class TargetRefused(WebhookError):
    """A target that resolves to an address webhooks may not reach."""


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class WebhookSettings:
    """The sender's tunables, from ``SHORTCORE_WEBHOOK_*`` (see :meth:`from_env`)."""

    #: Networks (``127.0.0.1/32``, ``10.0.0.0/8``) and host names webhooks may reach although
    #: they are not public, comma-separated.
    allow: str = ""
    #: Seconds to connect and get an answer.
    timeout: float = 10.0
    #: Backoff between attempts: from ``retry_min`` seconds doubling up to ``retry_max``, each
    #: delay drawn between half and all of its step (jitter).
    retry_min: float = 5.0
    retry_max: float = 3600.0
    #: Seconds after the first attempt a delivery is given up and dead-lettered.
    max_age: float = 25 * 3600.0
    #: Connections per endpoint, and deliveries in flight in all.
    connections: int = 8
    concurrency: int = 256
    #: Seconds between looks at the outbox when nothing is due.
    poll: float = 0.25

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get("SHORTCORE_WEBHOOK_" + f.name.upper())
            if raw is None or raw == "":
                continue
            try:
                kind = str(f.type)
                values[f.name] = int(raw) if kind.startswith("int") else float(raw) if kind == "float" else raw
            except ValueError as error:
                raise ValueError(f"SHORTCORE_WEBHOOK_{f.name.upper()}: {error}") from None
        return cls(**values)

    @property
    def lease_ms(self) -> int:
        return int((self.timeout * 2 + 5) * 1000)


# ---------------------------------------------------------------------------------------------
# Targets


class TargetGuard:
    """Decides which addresses webhooks may connect to."""

    def __init__(self, allow: str = "") -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.hosts: set[str] = set()
        for entry in (part.strip() for part in allow.split(",")):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def address_allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.networks):
            return True
        return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_loopback)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; raises :class:`TargetRefused` when any of them is refused
        (a name with one public and one private address is refused)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise TargetRefused(f"cannot resolve {host!r}: {error}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise TargetRefused(f"{host!r} has no address")
        if host.lower().rstrip(".") in self.hosts:
            return addresses
        refused = [a for a in addresses if not self.address_allowed(a)]
        if refused:
            raise TargetRefused(
                f"{host!r} resolves to {refused[0]}, which is not a public address "
                "(list it in SHORTCORE_WEBHOOK_ALLOW to permit it)"
            )
        return addresses


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        if not isinstance(url, str) or len(url) > 2048:
            raise WebhookError("'url' must be an http:// or https:// URL of at most 2048 characters")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError("'url' must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise WebhookError("'url' must not carry credentials; verify the signature instead")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise WebhookError("'url' has an invalid port") from None
        if any(c in url for c in "\r\n\t "):
            raise WebhookError("'url' must not contain spaces or control characters")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


# ---------------------------------------------------------------------------------------------
# Endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    account: str
    url: str
    secret: str
    events: tuple[str, ...]
    batch_size: int = 1
    created_at: float = 0.0
    #: After a rotation: the secret before it, still signed with until ``previous_until`` (Unix s).
    previous_secret: str = ""
    previous_until: float = 0.0

    def signing_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets a delivery sent at ``now`` is signed with: the current one, and the one
        before it while its grace period lasts."""
        if self.previous_secret and now < self.previous_until:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Endpoint:
        data = orjson.loads(raw)
        data["events"] = tuple(data.get("events") or ())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def public(self) -> dict[str, Any]:
        """The endpoint as the API shows it (the secret only when it is created)."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "batch_size": self.batch_size,
            "created_at": self.created_at,
            "previous_secret_expires_at": self.previous_until if self.previous_secret else None,
        }


async def create_endpoint(
    redis: AnyRedis,
    guard: TargetGuard,
    account: str,
    url: Any,
    events: Any = None,
    batch_size: Any = 1,
) -> Endpoint:
    """Registers an endpoint; raises :class:`WebhookError` for a bad URL, filter or batch size,
    :class:`TargetRefused` for a target that is not public."""
    target = Target.parse(url)
    if events is None:
        events = list(KINDS)
    if not isinstance(events, list) or not events or any(e not in KINDS for e in events):
        raise WebhookError(f"'events' must be a non-empty list of {', '.join(KINDS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise WebhookError(f"'batch_size' must be an integer from 1 to {MAX_BATCH}")
    if await redis.scard(ACCOUNT_ENDPOINTS_KEY + account) >= MAX_ENDPOINTS:
        raise WebhookError(f"an account may have at most {MAX_ENDPOINTS} endpoints")
    await guard.resolve(target.host, target.port)
    endpoint = Endpoint(
        id="wh_" + secrets.token_hex(8),
        account=account,
        url=url.strip(),
        secret="whsec_" + secrets.token_urlsafe(32),
        events=tuple(k for k in KINDS if k in events),
        batch_size=batch_size,
        created_at=time.time(),
    )
    await redis.hset(ENDPOINTS_KEY, endpoint.id, endpoint.to_json())
    await redis.sadd(ACCOUNT_ENDPOINTS_KEY + account, endpoint.id)
    return endpoint


#: The longest a rotated-out secret keeps signing deliveries.
MAX_GRACE_SECONDS: Final = 7 * 86_400
DEFAULT_GRACE_SECONDS: Final = 86_400


async def rotate_secret(redis: AnyRedis, account: str, endpoint_id: str, grace_seconds: Any) -> Endpoint | None:
    """Gives one of the account's endpoints a new secret; deliveries carry a signature with the
    old one too for ``grace_seconds`` (0: not at all), so receivers can switch without losing any.
    None when the account has no such endpoint; :class:`WebhookError` for a bad grace period."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int | float):
        raise WebhookError(f"'grace_seconds' must be a number from 0 to {MAX_GRACE_SECONDS}")
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise WebhookError(f"'grace_seconds' must be a number from 0 to {MAX_GRACE_SECONDS}")
    if not await redis.sismember(ACCOUNT_ENDPOINTS_KEY + account, endpoint_id):
        return None
    raw = await redis.hget(ENDPOINTS_KEY, endpoint_id)
    if raw is None:
        return None
    endpoint = Endpoint.from_json(raw)
    if endpoint.account != account:
        return None
    now = time.time()
    rotated = dataclasses.replace(
        endpoint,
        secret="whsec_" + secrets.token_urlsafe(32),
        previous_secret=endpoint.secret if grace_seconds > 0 else "",
        previous_until=now + grace_seconds if grace_seconds > 0 else 0.0,
    )
    await redis.hset(ENDPOINTS_KEY, endpoint_id, rotated.to_json())
    return rotated


async def list_endpoints(redis: AnyRedis, account: str) -> list[Endpoint]:
    ids = sorted(_str(i) for i in await redis.smembers(ACCOUNT_ENDPOINTS_KEY + account))
    if not ids:
        return []
    raws = await redis.hmget(ENDPOINTS_KEY, ids)
    found = [Endpoint.from_json(raw) for raw in raws if raw is not None]
    return [e for e in found if e.account == account]


async def delete_endpoint(redis: AnyRedis, account: str, endpoint_id: str) -> bool:
    """Removes one of the account's endpoints (its pending deliveries are dropped as they come
    due); False when the account has no such endpoint."""
    if not await redis.sismember(ACCOUNT_ENDPOINTS_KEY + account, endpoint_id):
        return False
    await redis.hdel(ENDPOINTS_KEY, endpoint_id)
    await redis.srem(ACCOUNT_ENDPOINTS_KEY + account, endpoint_id)
    return True


async def all_endpoints(redis: AnyRedis) -> dict[str, Endpoint]:
    raw = await redis.hgetall(ENDPOINTS_KEY)
    return {_str(k): Endpoint.from_json(v) for k, v in raw.items()}


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# Signing and payloads


def sign(secret: str, timestamp: int, body: bytes, *previous: str) -> str:
    """The ``Shortcore-Signature`` header value for ``body`` sent at ``timestamp``: one ``v1=`` for
    ``secret`` and one more for each secret in ``previous`` (during a rotation's grace period)."""
    signed = b"%d." % timestamp + body
    macs = ",".join(f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in (secret, *previous))
    return f"t={timestamp},{macs}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0, now: float | None = None) -> bool:
    """What a receiver does: one of the ``v1`` signatures matches and it is at most ``tolerance``
    seconds old."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for name, value in parts if name.strip() == "t"]
    try:
        timestamp = int(stamps[0])
    except (IndexError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs((time.time() if now is None else now) - timestamp) <= tolerance
    # Every v1 is compared, so the time taken does not tell which one matched.
    matches = [hmac.compare_digest(expected, value) for name, value in parts if name.strip() == "v1"]
    return fresh and any(matches)


def event_kind(event: Mapping[str, Any], final_class: str) -> str | None:
    """The kind an endpoint filters on: click (a person), view (a preview), bot, conversion."""
    if event.get("type") == "conversion":
        return "conversion" if event.get("outcome") in COUNTED else None
    if event.get("type") != "click" or event.get("outcome") != "ok":
        return None
    return {"human": "click", "preview": "view", "bot": "bot"}.get(final_class)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payload(
    event: Mapping[str, Any],
    extra: Mapping[str, Any],
    kind: str,
    recipient: tuple[str, str] | None,
    link_url: str | None,
    click_id: str | None = None,
) -> dict[str, Any]:
    """The JSON an endpoint receives for one event; ``click_id`` is a request's signed click id
    (as its landing page got it), for the request kinds."""
    phone, recipient_id = recipient or ("", "")
    body: dict[str, Any] = {
        "id": event["event_id"],
        "type": kind,
        "time": _iso(int(event["time"])),
        "campaign_id": event.get("campaign_id") or None,
        # The recipient's A/B variant, as the sink gave it (None for a campaign of one text).
        "variant": extra.get("_variant") or None,
        "link": {"index": event.get("link_index", -1), "url": link_url} if event.get("link_index", -1) >= 0 else None,
        "recipient": (
            {"index": event.get("recipient_index"), "phone": phone or None, "id": recipient_id or None}
            if event.get("recipient_index", -1) >= 0
            else None
        ),
        "class": extra.get("_class") or event.get("class"),
        "reason": extra.get("_reason") or event.get("reason") or "",
        "browser": event.get("browser") or None,
        "os": event.get("os") or None,
        "device": event.get("device") or None,
        "country": event.get("country") or extra.get("_country") or None,
        # A receiver keeps, per id, the delivery with the highest revision (see docs/conversions.md).
        "revision": int(extra.get("_revision") or 0),
        "reclassified": False,
    }
    if event.get("type") == "click":
        body["click_id"] = click_id
    if kind == "conversion":
        body["conversion"] = {
            "event": event.get("event_name") or None,
            "value": event.get("value"),
            "currency": event.get("currency") or None,
            "order_id": event.get("order_id") or None,
            "attribution": event.get("outcome"),
            "click_id": event.get("click_id") or None,
            "source": event.get("source") or "pixel",
        }
    return body


# ---------------------------------------------------------------------------------------------
# The outbox


@dataclass(slots=True)
class Delivery:
    """One request to one endpoint: one event, or up to ``batch_size`` of them."""

    id: str
    endpoint: str
    account: str
    event_ids: list[str]
    body: bytes
    attempt: int = 0
    first_at: int = 0
    last_error: str = ""
    last_status: int = 0

    def encode(self) -> bytes:
        meta = {
            "e": self.endpoint,
            "a": self.account,
            "ids": self.event_ids,
            "n": self.attempt,
            "f": self.first_at,
            "err": self.last_error,
            "st": self.last_status,
        }
        return orjson.dumps(meta) + b"\n" + self.body

    @classmethod
    def decode(cls, delivery_id: str, raw: bytes) -> Delivery:
        meta_raw, _, body = raw.partition(b"\n")
        meta = orjson.loads(meta_raw)
        return cls(
            delivery_id,
            meta["e"],
            meta["a"],
            list(meta["ids"]),
            body,
            int(meta["n"]),
            int(meta["f"]),
            str(meta.get("err", "")),
            int(meta.get("st", 0)),
        )

    def public(self, failed_at: float | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.endpoint,
            "event_ids": self.event_ids,
            "attempts": self.attempt,
            "first_attempt_at": self.first_at / 1000 if self.first_at else None,
            "failed_at": failed_at,
            "last_error": self.last_error,
            "last_status": self.last_status or None,
        }


class Outbox:
    """Deliveries waiting in Redis, claimed with a lease."""

    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis
        self._claim = redis.register_script(CLAIM_SCRIPT)

    async def add(self, deliveries: Sequence[Delivery], now_ms: int | None = None) -> int:
        """Adds deliveries due now. One already there (a replayed sink batch) is left alone."""
        if not deliveries:
            return 0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        pipe = self.redis.pipeline(transaction=False)
        for d in deliveries:
            pipe.hsetnx(ITEM_KEY, d.id, d.encode())
        added = await pipe.execute()
        fresh = {d.id: now_ms for d, new in zip(deliveries, added, strict=True) if new}
        if fresh:
            await self.redis.zadd(DUE_KEY, fresh, nx=True)
        return len(fresh)

    async def claim(self, limit: int, lease_ms: int, now_ms: int | None = None) -> list[Delivery | str]:
        """Up to ``limit`` due deliveries, now leased; an id alone where the item is gone."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        reply = await self._claim(keys=[DUE_KEY, ITEM_KEY], args=[now_ms, limit, now_ms + lease_ms])
        out: list[Delivery | str] = []
        for i in range(0, len(reply), 2):
            delivery_id, raw = _str(reply[i]), reply[i + 1]
            out.append(delivery_id if raw is None else Delivery.decode(delivery_id, raw))
        return out

    async def settle(
        self,
        done: Iterable[str],
        retry: Iterable[tuple[Delivery, int]],
        dead: Iterable[Delivery],
        later: Iterable[tuple[str, int]] = (),
    ) -> None:
        """Applies a round of outcomes in one pipeline: delivered (or dropped) ids, retries with
        their due time, dead deliveries, and deliveries put back unattempted."""
        pipe = self.redis.pipeline(transaction=False)
        done = list(done)
        if done:
            pipe.zrem(DUE_KEY, *done)
            pipe.hdel(ITEM_KEY, *done)
        now_ms = int(time.time() * 1000)
        for delivery, due in retry:
            pipe.hset(ITEM_KEY, delivery.id, delivery.encode())
            pipe.zadd(DUE_KEY, {delivery.id: due})
        for delivery in dead:
            pipe.zrem(DUE_KEY, delivery.id)
            pipe.hdel(ITEM_KEY, delivery.id)
            pipe.hset(DEAD_KEY + delivery.account, delivery.id, delivery.encode())
            pipe.zadd(DEAD_ORDER_KEY + delivery.account, {delivery.id: now_ms})
        for delivery_id, due in later:
            pipe.zadd(DUE_KEY, {delivery_id: due}, xx=True)
        if len(pipe):
            await pipe.execute()

    async def pending(self) -> int:
        return int(await self.redis.zcard(DUE_KEY))

    async def next_due(self) -> int | None:
        first = await self.redis.zrange(DUE_KEY, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def dead(self, account: str, limit: int = 100, before: float | None = None) -> list[dict[str, Any]]:
        """The account's dead deliveries, newest first."""
        top = "+inf" if before is None else f"({int(before * 1000)}"
        found: list[Any] = await self.redis.zrevrangebyscore(
            DEAD_ORDER_KEY + account, top, "-inf", start=0, num=limit, withscores=True
        )
        if not found:
            return []
        raws: list[Any] = await self.redis.hmget(DEAD_KEY + account, [_str(i) for i, _ in found])
        out = []
        for (delivery_id, failed_ms), raw in zip(found, raws, strict=True):
            if raw is not None:
                out.append(Delivery.decode(_str(delivery_id), raw).public(float(failed_ms) / 1000))
        return out

    async def replay(self, account: str, ids: Sequence[str] | None) -> int:
        """Puts dead deliveries (all when ``ids`` is None) back in the outbox, as new."""
        if ids is None:
            ids = [_str(i) for i in await self.redis.zrange(DEAD_ORDER_KEY + account, 0, -1)]
        if not ids:
            return 0
        raws: list[Any] = await self.redis.hmget(DEAD_KEY + account, list(ids))
        now_ms = int(time.time() * 1000)
        back = []
        for delivery_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue
            delivery = Delivery.decode(delivery_id, raw)
            delivery.attempt, delivery.first_at, delivery.last_error, delivery.last_status = 0, 0, "", 0
            back.append(delivery)
        if not back:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for delivery in back:
            pipe.hset(ITEM_KEY, delivery.id, delivery.encode())
            pipe.zadd(DUE_KEY, {delivery.id: now_ms})
            pipe.hdel(DEAD_KEY + account, delivery.id)
            pipe.zrem(DEAD_ORDER_KEY + account, delivery.id)
        await pipe.execute()
        return len(back)


# ---------------------------------------------------------------------------------------------
# HTTP


class _Response:
    """httptools' callbacks for one response."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    async def post(self, head: bytes, body: bytes, timeout: float) -> int:
        self.writer.write(head + body)
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        try:
            async with asyncio.timeout(timeout):
                while not response.done:
                    data = await self.reader.read(65536)
                    if not data:
                        raise ConnectionError("the receiver closed the connection")
                    parser.feed_data(data)
        except BaseException:
            self.reusable = False
            raise
        self.reusable = parser.should_keep_alive()
        return int(parser.get_status_code())

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


class ConnectionPool:
    """Keep-alive connections to one target, opened to the addresses the guard allowed."""

    def __init__(self, target: Target, guard: TargetGuard, size: int, timeout: float) -> None:
        self.target, self.guard, self.timeout = target, guard, timeout
        self._idle: list[HttpConnection] = []
        self._slots = asyncio.Semaphore(size)
        self._ssl = ssl.create_default_context() if target.scheme == "https" else None

    async def _open(self) -> HttpConnection:
        addresses = await self.guard.resolve(self.target.host, self.target.port)
        error: Exception | None = None
        for address in addresses:
            try:
                opened = asyncio.open_connection(
                    address,
                    self.target.port,
                    ssl=self._ssl,
                    server_hostname=self.target.host if self._ssl else None,
                )
                reader, writer = await asyncio.wait_for(opened, self.timeout)
                return HttpConnection(reader, writer)
            except (OSError, TimeoutError) as exc:
                error = exc
        raise ConnectionError(f"cannot connect to {self.target.host}:{self.target.port}: {error}")

    async def post(self, head: bytes, body: bytes) -> int:
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                status = await conn.post(head, body, self.timeout)
            except BaseException:
                conn.close()
                raise
            if conn.reusable:
                self._idle.append(conn)
            else:
                conn.close()
            return status

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def request_head(target: Target, body_length: int, signature: str, delivery: Delivery) -> bytes:
    return (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {body_length}\r\n"
        f"{SIGNATURE_HEADER}: {signature}\r\nShortcore-Delivery: {delivery.id}\r\n"
        f"Shortcore-Attempt: {delivery.attempt + 1}\r\n\r\n"
    ).encode()


# ---------------------------------------------------------------------------------------------
# The sender


@dataclass
class SenderStatus:
    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    dropped: int = 0

    def snapshot(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class WebhookSender:
    """Claims due deliveries and sends them, ``connections`` at a time per endpoint."""

    def __init__(self, redis: AnyRedis, settings: WebhookSettings | None = None) -> None:
        self.redis = redis
        self.settings = settings or WebhookSettings()
        self.guard = TargetGuard(self.settings.allow)
        self.outbox = Outbox(redis)
        self.status = SenderStatus()
        self._endpoints: dict[str, Endpoint] = {}
        self._endpoints_at = 0.0
        self._pools: dict[str, tuple[str, ConnectionPool]] = {}
        self._inflight = 0
        self._per_endpoint: dict[str, int] = {}
        self._done: list[str] = []
        self._retry: list[tuple[Delivery, int]] = []
        self._dead: list[Delivery] = []
        self._later: list[tuple[str, int]] = []
        self._progress = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """New deliveries were added by this process: look now rather than at the next poll."""
        self._progress.set()

    async def endpoints(self, force: bool = False) -> dict[str, Endpoint]:
        now = time.monotonic()
        if force or now - self._endpoints_at > 2.0:
            self._endpoints = await all_endpoints(self.redis)
            self._endpoints_at = now
        return self._endpoints

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set. Deliveries in flight then are finished (within the timeout)."""
        limit = self.settings.concurrency
        try:
            while not stop.is_set():
                try:
                    await self._settle()
                    room = limit - self._inflight
                    claimed = await self.outbox.claim(room, self.settings.lease_ms) if room > 0 else []
                    if claimed:
                        endpoints = await self.endpoints()
                        for item in claimed:
                            self._start(item, endpoints)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # Redis unreachable: try again shortly
                    log.warning("webhook outbox unreachable: %s", error)
                    claimed = []
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
                    continue
                if claimed and self._inflight < limit:
                    await asyncio.sleep(0)
                    continue
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), self.settings.poll)
        finally:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=self.settings.timeout + 1)
            with contextlib.suppress(Exception):
                await self._settle()
            for _, pool in self._pools.values():
                pool.close()

    def _start(self, item: Delivery | str, endpoints: Mapping[str, Endpoint]) -> None:
        if isinstance(item, str):
            self._done.append(item)
            return
        endpoint = endpoints.get(item.endpoint)
        if endpoint is None:  # deleted since: nothing to send to
            self._done.append(item.id)
            self.status.dropped += 1
            return
        busy = self._per_endpoint.get(endpoint.id, 0)
        if busy >= self.settings.connections * 4:
            # This endpoint has enough waiting; the others get the slots meanwhile.
            self._later.append((item.id, int(time.time() * 1000) + 1000))
            return
        self._per_endpoint[endpoint.id] = busy + 1
        self._inflight += 1
        task = asyncio.get_running_loop().create_task(self._send(endpoint, item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pool(self, endpoint: Endpoint) -> ConnectionPool:
        known = self._pools.get(endpoint.id)
        if known is not None and known[0] == endpoint.url:
            return known[1]
        if known is not None:
            known[1].close()
        pool = ConnectionPool(Target.parse(endpoint.url), self.guard, self.settings.connections, self.settings.timeout)
        self._pools[endpoint.id] = (endpoint.url, pool)
        return pool

    async def _send(self, endpoint: Endpoint, delivery: Delivery) -> None:
        now = time.time()
        if not delivery.first_at:
            delivery.first_at = int(now * 1000)
        try:
            pool = self._pool(endpoint)
            current, *older = endpoint.signing_secrets(now)
            signature = sign(current, int(now), delivery.body, *older)
            head = request_head(pool.target, len(delivery.body), signature, delivery)
            status = await pool.post(head, delivery.body)
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except TimeoutError:
            status, error = 0, f"no answer within {self.settings.timeout:g} s"
        except (OSError, ConnectionError, WebhookError, httptools.HttpParserError) as exc:
            status, error = 0, str(exc) or type(exc).__name__
        finally:
            self._inflight -= 1
            self._per_endpoint[endpoint.id] -= 1
        if not error:
            self._done.append(delivery.id)
            self.status.delivered += 1
        else:
            self._failed(delivery, status, error)
        self._progress.set()

    def _failed(self, delivery: Delivery, status: int, error: str) -> None:
        self.status.failed_attempts += 1
        delivery.attempt += 1
        delivery.last_error, delivery.last_status = error[:300], status
        step = min(self.settings.retry_min * 2 ** (delivery.attempt - 1), self.settings.retry_max)
        delay = step / 2 + random.random() * step / 2
        due_ms = int((time.time() + delay) * 1000)
        if due_ms - delivery.first_at > self.settings.max_age * 1000:
            self._dead.append(delivery)
            self.status.dead_lettered += 1
            log.warning("webhook delivery %s dead after %d attempts: %s", delivery.id, delivery.attempt, error)
        else:
            self._retry.append((delivery, due_ms))

    async def _settle(self) -> None:
        if not (self._done or self._retry or self._dead or self._later):
            return
        done, retry, dead, later = self._done, self._retry, self._dead, self._later
        self._done, self._retry, self._dead, self._later = [], [], [], []
        try:
            await self.outbox.settle(done, retry, dead, later)
        except BaseException:
            # Not recorded: keep them for the next round (the lease covers them meanwhile).
            self._done[:0], self._retry[:0], self._dead[:0], self._later[:0] = done, retry, dead, later
            raise


# ---------------------------------------------------------------------------------------------
# From the sink's output to the outbox


class SinkRow(Protocol):
    event: dict[str, Any]
    extra: dict[str, Any]


@dataclass
class WebhookService:
    """The webhooks of one control process: :meth:`after_insert` for the sink, and the sender."""

    redis: AnyRedis
    analytics: AnalyticsStore | None
    settings: WebhookSettings = field(default_factory=WebhookSettings)
    #: Signs the click ids of request events as the edge did for their landing pages (the
    #: :data:`~shortcore.routing.CLICK_PARAM` parameter and cookie), so an integration can match
    #: a webhook's click to what its page received.
    click_ids: ClickIds | None = None
    sender: WebhookSender = field(init=False)
    _links: dict[str, Campaign | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.sender = WebhookSender(self.redis, self.settings)

    async def after_insert(self, rows: Sequence[SinkRow], again: Sequence[SinkRow] = ()) -> None:
        """Turns a batch of inserted events into deliveries for the endpoints that want them.
        ``again`` are events of earlier batches a sequence rule has since reclassified: each goes
        once more, as a revision (see :func:`payload`), to the endpoints that wanted it as it was
        and to those that want it as it is now."""
        endpoints = await self.sender.endpoints()
        if not endpoints:
            return
        by_account: dict[str, list[Endpoint]] = {}
        for endpoint in endpoints.values():
            by_account.setdefault(endpoint.account, []).append(endpoint)
        wanted: list[tuple[SinkRow, str, str | None, list[Endpoint]]] = []
        for row, revised in itertools.chain(((r, False) for r in rows), ((r, True) for r in again)):
            event = row.event
            targets = by_account.get(str(event.get("account") or ""))
            if not targets:
                continue
            kind = event_kind(event, str(row.extra.get("_class") or event.get("class")))
            before = event_kind(event, str(event.get("class"))) if revised else None
            if kind is None:
                continue
            chosen = [e for e in targets if kind in e.events or before in e.events]
            if chosen:
                wanted.append((row, kind, before if revised else None, chosen))
        if not wanted:
            return
        recipients = await self._recipients(
            {
                (str(r.event["campaign_id"]), int(r.event["recipient_index"]))
                for r, _, _, _ in wanted
                if r.event.get("campaign_id") and r.event.get("recipient_index", -1) >= 0
            }
        )
        # Per endpoint: first deliveries, then revisions, never in one batch (their ids differ).
        per_endpoint: dict[tuple[str, bool], list[tuple[str, str, bytes]]] = {}
        for row, kind, before, chosen in wanted:
            event = row.event
            campaign = str(event.get("campaign_id") or "")
            key = (campaign, int(event.get("recipient_index", -1)))
            link_url = await self._link_url(campaign, event.get("link_index", -1), key[1])
            click_id = str(event.get("click_id") or "")
            signed = self.click_ids.issue(click_id) if self.click_ids is not None and click_id else None
            body_of = payload(event, row.extra, kind, recipients.get(key), link_url, signed)
            revision = int(row.extra.get("_revision") or 0)
            if before is not None:
                body_of["reclassified"] = True
                body_of["previous"] = {"type": before, "class": event.get("class"), "reason": event.get("reason")}
            body = orjson.dumps(body_of)
            event_id = str(event["event_id"])
            delivery_key = f"{event_id}:r{revision}" if before is not None else event_id
            for endpoint in chosen:
                per_endpoint.setdefault((endpoint.id, before is not None), []).append((event_id, delivery_key, body))
        deliveries = []
        for (endpoint_id, _), items in per_endpoint.items():
            endpoint = endpoints[endpoint_id]
            size = endpoint.batch_size
            for start in range(0, len(items), size):
                chunk = items[start : start + size]
                ids = [event_id for event_id, _, _ in chunk]
                # Batching endpoints always get {"events": [...]}, even with one event in it.
                body = chunk[0][2] if size == 1 else b'{"events":[' + b",".join(b for _, _, b in chunk) + b"]}"
                delivery_id = f"{endpoint_id}:{chunk[0][1]}" + (f":{len(ids)}" if size > 1 else "")
                deliveries.append(Delivery(delivery_id, endpoint_id, endpoint.account, ids, body))
        await self.sender.outbox.add(deliveries)
        self.sender.wake()

    async def _recipients(self, keys: set[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, str]]:
        if not keys or self.analytics is None:
            return {}

        def query(client: Any) -> list[tuple[Any, ...]]:
            return list(
                client.query(
                    f"SELECT campaign_id, recipient_index, phone, recipient_id FROM {DATABASE}.messages "
                    "WHERE campaign_id IN %(cs)s AND (campaign_id, recipient_index) IN %(keys)s "
                    "LIMIT 1 BY campaign_id, recipient_index",
                    parameters={"cs": sorted({c for c, _ in keys}), "keys": sorted(keys)},
                ).result_rows
            )

        rows = await self.analytics.run(query)
        return {(str(c), int(r)): (str(p), str(i)) for c, r, p, i in rows}

    async def _link_url(self, campaign_id: str, link: int, recipient: int = -1) -> str | None:
        if not campaign_id or link < 0:
            return None
        if campaign_id not in self._links:
            raw = await self.redis.get(CAMPAIGN_KEY + campaign_id)
            if len(self._links) > 10_000:
                self._links.clear()
            self._links[campaign_id] = Campaign.from_json(raw) if raw is not None else None
        campaign = self._links[campaign_id]
        if campaign is None:
            return None
        destinations = campaign.destinations
        if campaign.variants and recipient >= 0:  # the recipient's variant's links
            destinations = campaign.variants[campaign.variant_of(recipient)].destinations
        return destinations[link] if link < len(destinations) else None

    async def run(self, stop: asyncio.Event) -> None:
        await self.sender.run(stop)
