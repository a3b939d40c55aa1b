"""The edge: ``GET``/``HEAD /{token}``, the conversion pixel ``GET /c_t``, ``/healthz`` and ``/metrics``.

The two public hot paths are plain ASGI functions read top to bottom — decode → route → classify
→ event → respond — that :class:`EdgeApp` calls directly; ``/healthz``, ``/metrics`` and the
lifespan go to a small Starlette app. No response leaves before its event is held by Redis (or,
while Redis is unreachable, by the spool): see :mod:`shortcore.events` and ``DESIGN.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shortcore import metrics
from shortcore.backlog import Backlog, BacklogCache
from shortcore.classify import CLASSIFIER_HEADERS, Classifier
from shortcore.clickids import ClickIds
from shortcore.config import Settings
from shortcore.conversions import CONVERSION_SCRIPT
from shortcore.events import EVENT_VERSION, EventIds, EventSpool, EventWriter
from shortcore.routing import CLICK_PARAM, MISS, Campaign, Domain, LinkTarget, RouteCache, normalize_host
from shortcore.store import AnyRedis, EmbeddedStore, connect, is_cluster_url, redacted
from shortcore.tokens import TokenCodec

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PIXEL_GIF: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NOT_FOUND_PAGE: Final = (
    b"<!doctype html><meta charset=utf-8><title>Link not found</title><p>This link does not exist or has expired.</p>\n"
)
UNAVAILABLE_PAGE: Final = (
    b"<!doctype html><meta charset=utf-8><title>Try again</title><p>Please try again shortly.</p>\n"
)
TOO_MANY_PAGE: Final = b"<!doctype html><meta charset=utf-8><title>Too many requests</title><p>Slow down.</p>\n"

MAX_HEADER_IN_EVENT: Final = 1024
MAX_PARAM: Final = 256
# Paths browsers and crawlers ask for on their own: answered 404, no event, no probing strike.
PROBE_KEY: Final = "sc:probe:"
IGNORED_PATHS: Final = frozenset({b"/favicon.ico", b"/robots.txt", b"/apple-touch-icon.png"})

_CLASSIFIER_HEADERS: Final = frozenset(h.encode() for h in CLASSIFIER_HEADERS)
_NO_CACHE: Final = (b"cache-control", b"private, no-store")
_HTML: Final = (b"content-type", b"text/html; charset=utf-8")
_SCRIPT_HEADERS: Final = (
    (b"content-type", b"text/javascript; charset=utf-8"),
    (b"cache-control", b"public, max-age=3600"),
    (b"access-control-allow-origin", b"*"),
)


class UnknownTokenLimiter:
    """Per-client token bucket over unknown or malformed tokens: ``per_minute`` strikes, refilled
    continuously. A client with an empty bucket gets 429 for every token until it refills."""

    MAX_CLIENTS: Final = 100_000

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def _level(self, client: str, now: float) -> float:
        entry = self._buckets.get(client)
        if entry is None:
            return self.capacity
        level, at = entry
        return min(self.capacity, level + (now - at) * self.rate)

    def blocked(self, client: str, now: float) -> bool:
        return self.capacity > 0 and client in self._buckets and self._level(client, now) < 1.0

    def strike(self, client: str, now: float) -> None:
        if self.capacity <= 0:
            return
        if len(self._buckets) >= self.MAX_CLIENTS:
            self._buckets = {k: v for k, v in self._buckets.items() if self._level(k, now) < self.capacity}
            if len(self._buckets) >= self.MAX_CLIENTS:
                self._buckets.clear()
        self._buckets[client] = (self._level(client, now) - 1.0, now)


class SharedProbeCount:
    """Unknown-token strikes counted in Redis per client and minute (``sc:probe:<minute>:<client>``,
    expiring after two minutes), so that N workers and N edge nodes enforce one limit together
    rather than N times it. Only unknown and malformed tokens pay this round trip; a client whose
    shared count reaches the limit is refused locally until the minute ends. Each worker lets at
    most one more strike through after the limit (the one that tells it). Without Redis the local
    bucket alone applies."""

    MAX_CLIENTS: Final = 100_000
    TIMEOUT: Final = 0.25

    def __init__(self, redis: AnyRedis, per_minute: int) -> None:
        self.redis = redis
        self.limit = per_minute
        self._blocked_until: dict[str, float] = {}

    def blocked(self, client: str, now: float) -> bool:
        until = self._blocked_until.get(client)
        return until is not None and now < until

    async def strike(self, client: str, now: float) -> None:
        if self.limit <= 0:
            return
        minute = int(now // 60)
        key = f"{PROBE_KEY}{minute}:{client}"
        try:
            async with asyncio.timeout(self.TIMEOUT):
                pipe = self.redis.pipeline(transaction=False)
                pipe.incr(key)
                pipe.expire(key, 120)
                count, _ = await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            return
        if int(count) >= self.limit:
            if len(self._blocked_until) >= self.MAX_CLIENTS:
                self._blocked_until = {k: v for k, v in self._blocked_until.items() if v > now}
            self._blocked_until[client] = (minute + 1) * 60.0


class EdgeState:
    """What the edge holds while it runs; built in the lifespan, never at import."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.redis: AnyRedis = connect(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.cache = RouteCache(self.redis)
        self.writer = EventWriter(
            redis_url,
            EventSpool(settings.data_dir / "spool"),
            timeout=settings.event_timeout,
            cluster_client=self.redis if is_cluster_url(redis_url) else None,
        )
        secret = settings.token_secret()
        self.codecs = {length: TokenCodec(secret, length) for length in range(6, 13)}
        self.click_ids = ClickIds(secret)
        self.classifier = Classifier(settings.too_soon_seconds)
        self.ids = EventIds()
        self.stats = metrics.EdgeStats()
        self.limiter = UnknownTokenLimiter(settings.unknown_token_limit)
        self.probes = SharedProbeCount(self.redis, settings.unknown_token_limit)
        self.proxy_header = settings.trusted_proxy_header.lower().encode() if settings.trusted_proxy_header else None
        self.cookie_tail = f"; Max-Age={settings.cookie_days * 86400}; Path=/; Secure; HttpOnly; SameSite=None"
        self.default_domain: Domain | None = None
        if settings.base_url:
            host = settings.base_url.split("://", 1)[-1].split("/", 1)[0]
            self.default_domain = Domain(host=normalize_host(host))
        self.stats_dir = metrics.StatsDirectory(settings.data_dir / "metrics")
        # The sink's backlog is one figure of the whole stream, not a per-worker one: read by each
        # worker on request, never summed across workers.
        self.backlog = BacklogCache(self.redis)
        self.collector = metrics.EdgeCollector(self.snapshot, self.stats_dir, self.backlog)
        self._tasks: list[asyncio.Task[None]] = []

    def snapshot(self) -> dict[str, Any]:
        return self.stats.snapshot(self.writer, len(self.cache))

    async def start(self) -> None:
        self.writer.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.cache.watch(), name="shortcore-routing-watch"))
        self._tasks.append(loop.create_task(self._publish_stats(), name="shortcore-stats"))
        # Everything built so far (modules, the app, codecs, the classifier) lives as long as the
        # process: out of the collector's sight, so its full collections stay short (tail latency).
        gc.freeze()

    async def _publish_stats(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.stats_dir.write(self.snapshot())
            await asyncio.sleep(2.0)

    async def stop(self) -> None:
        self.cache.closed = True
        for task in self._tasks:
            task.cancel()
        # redis-py's pub/sub can sit on a cancellation; do not let it hold the shutdown.
        await asyncio.wait(self._tasks, timeout=1.0)
        await self.writer.aclose()
        self.stats_dir.remove()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # -- request helpers -----------------------------------------------------------------------

    def client_ip(self, scope: Scope, proxied: bytes | None) -> str:
        if proxied:
            value = proxied.decode("latin-1")
            if self.proxy_header == b"x-forwarded-for":
                # The last address is the one our proxy saw; earlier ones are the client's word.
                value = value.rsplit(",", 1)[-1]
            value = value.strip()
            with contextlib.suppress(ValueError):
                return str(ipaddress.ip_address(value))
        client = scope.get("client")
        return str(client[0]) if client else ""

    async def domain_for(self, host: str) -> Domain | None:
        found = self.cache.domain(host, time.monotonic())
        if found is MISS:
            try:
                found = await self.cache.load_domain(host)
            except (RedisError, OSError):
                found = None
        if found is None:
            return self.default_domain
        assert isinstance(found, Domain)
        return found

    async def route(self, seq: int, now: float) -> Campaign | str | None:
        """The campaign of ``seq``, None when it has none, or "unavailable" when only an
        unreachable Redis could tell."""
        found = self.cache.find(seq, now)
        if found is MISS:
            try:
                found = await self.cache.load(seq)
            except (RedisError, OSError):
                return "unavailable"
        assert found is None or isinstance(found, Campaign)
        return found

    async def record(self, event: dict[str, Any]) -> bool:
        """Hands the event to the group-commit writer and waits until it is held."""
        return await self.writer.submit(orjson.dumps(event))


def _text(value: bytes, limit: int = MAX_HEADER_IN_EVENT) -> str:
    return value[:limit].decode("utf-8", "replace")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The last value of header ``name`` (ASGI names are lowercase)."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def _split_headers(
    headers: list[tuple[bytes, bytes]], proxy_header: bytes | None
) -> tuple[bytes, bytes, bytes, dict[str, str], bytes | None]:
    """One pass over the request headers: user agent, host, cookie, the classifier's headers
    (for the event) and the trusted proxy header."""
    ua = host = cookie = b""
    kept: dict[str, str] = {}
    proxied = None
    for name, value in headers:
        if name == b"user-agent":
            ua = value
        elif name == b"host":
            host = value
        elif name == b"cookie":
            cookie = value
        if name in _CLASSIFIER_HEADERS and name != b"user-agent":
            kept[name.decode("latin-1")] = _text(value)
        if name == proxy_header:
            proxied = value
    return ua, host, cookie, kept, proxied


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, head: bool) -> None:
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _not_found(send: Send, domain: Domain | None, head: bool) -> int:
    if domain is not None and domain.fallback_url:
        await _respond(send, 302, [(b"location", domain.fallback_url.encode()), _NO_CACHE], b"", head)
        return 302
    await _respond(send, 404, [_HTML, _NO_CACHE], NOT_FOUND_PAGE, head)
    return 404


async def handle_redirect(st: EdgeState, scope: Scope, send: Send) -> None:
    """``GET``/``HEAD /{token}``."""
    now = time.time()
    mono = time.monotonic()
    method: str = scope["method"]
    head = method == "HEAD"
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    if raw_path in IGNORED_PATHS:
        await _respond(send, 404, [_HTML, _NO_CACHE], NOT_FOUND_PAGE, head)
        return
    token = raw_path[1:]
    if token.endswith(b"/"):
        token = token[:-1]
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    ip = st.client_ip(scope, _header(headers, st.proxy_header) if st.proxy_header else None)

    # Decode and route.
    campaign: Campaign | None = None
    target: LinkTarget | None = None
    recipient = link = -1
    if method not in ("GET", "HEAD"):
        outcome = "method"
    elif st.limiter.blocked(ip, mono) or st.probes.blocked(ip, now):
        outcome = "limited"
    else:
        codec = st.codecs.get(len(token))
        seq = codec.decode(token) if codec is not None else None
        if seq is None:
            outcome = "malformed"
        else:
            found = await st.route(seq, mono)
            if isinstance(found, Campaign) and found.token_length == len(token):
                recipient, link = found.locate(seq)
                target = found.target(recipient, link)
                if target is None:  # a link slot the recipient's variant does not have
                    recipient = link = -1
                    outcome = "unknown"
                else:
                    campaign = found
                    outcome = "expired" if campaign.expired(now) else "ok"
            else:
                outcome = "unavailable" if found == "unavailable" else "unknown"
        if outcome in ("malformed", "unknown"):
            st.limiter.strike(ip, mono)
            await st.probes.strike(ip, now)

    # The Host only matters when no campaign answers: the event's domain, the fallback URL.
    host = campaign.domain if campaign is not None else normalize_host(_text(_header(headers, b"host") or b"", 256))

    # Classify and write the event in one call into the core (one pass over the headers).
    since_send = now - campaign.sent_at if campaign is not None and campaign.sent_at is not None else None
    event_id = st.ids.new(now)
    click_id = event_id if outcome == "ok" else ""
    event, label = st.classifier.edge_event(
        headers, method, outcome, event_id, int(now * 1000),
        campaign.account if campaign else "", campaign.id if campaign else "", host, token,
        recipient, link, ip, click_id, since_send,
    )  # fmt: skip

    # Held by Redis (or the spool) before we answer.
    held = await st.writer.submit(event)
    st.stats.requests[("click", outcome, label)] += 1

    # Respond.
    if not held:
        await _respond(send, 503, [_HTML, _NO_CACHE, (b"retry-after", b"5")], UNAVAILABLE_PAGE, head)
    elif outcome == "ok":
        assert campaign is not None and target is not None
        # The event keeps the bare event id; what leaves is signed, so it cannot be forged.
        signed = st.click_ids.issue(click_id)
        location = target.location(signed if campaign.click_param else None)
        answer = [
            (b"location", location.encode()),
            (b"set-cookie", f"{CLICK_PARAM}={signed}{st.cookie_tail}".encode()),
            _NO_CACHE,
        ]
        await _respond(send, 302, answer, b"", head)
    elif outcome == "limited":
        st.stats.rate_limited += 1
        await _respond(send, 429, [_HTML, _NO_CACHE, (b"retry-after", b"60")], TOO_MANY_PAGE, head)
    elif outcome == "method":
        await _respond(send, 405, [_HTML, (b"allow", b"GET, HEAD")], b"Method not allowed\n", head)
    else:
        domain = await st.domain_for(host)
        if outcome == "unavailable" and (domain is None or not domain.fallback_url):
            await _respond(send, 503, [_HTML, _NO_CACHE, (b"retry-after", b"5")], UNAVAILABLE_PAGE, head)
        else:
            await _not_found(send, domain, head)


def _number(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and abs(value) < 1e14 else None


def _cookie(cookie: bytes, name: bytes) -> bytes:
    for part in cookie.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == name:
            return value.strip().strip(b'"')
    return b""


async def handle_pixel(st: EdgeState, scope: Scope, send: Send) -> None:
    """``GET /c_t?cid=…[&event=&value=&currency=&order_id=&click=]``: always the GIF."""
    now = time.time()
    method: str = scope["method"]
    ua, host_raw, cookie, kept, proxied = _split_headers(scope["headers"], st.proxy_header)
    ip = st.client_ip(scope, proxied)
    params: dict[str, str] = {}
    with contextlib.suppress(ValueError):
        query = scope.get("query_string", b"").decode("latin-1")
        for key, value in parse_qsl(query, keep_blank_values=True, max_num_fields=64):
            params.setdefault(key[:32], value[:MAX_PARAM])
    raw_value = params.get("value", "")
    value = _number(raw_value) if raw_value else None
    cookie_click = _text(_cookie(cookie, CLICK_PARAM.encode()), MAX_PARAM)
    click_param = params.get("click", "")
    verdict = st.classifier.classify(ua, method, scope["headers"], None, ip or None)
    outcome = "ok" if params.get("cid") else "no-cid"
    event = {
        "v": EVENT_VERSION,
        "event_id": st.ids.new(now),
        "time": int(now * 1000),
        "type": "conversion",
        "outcome": outcome,
        "account": "",
        "campaign_id": "",
        "domain": normalize_host(_text(host_raw, 256)),
        "token": "",
        "recipient_index": -1,
        "link_index": -1,
        "class": verdict.label,
        "reason": verdict.reason,
        "browser": verdict.browser or "",
        "os": verdict.os or "",
        "device": verdict.device,
        "method": method[:16],
        "ip": ip,
        "user_agent": _text(ua),
        "headers": kept,
        # The click a conversion belongs to: the explicit parameter, else the cookie.
        "click_id": click_param or cookie_click,
        "click_param": click_param,
        "click_cookie": cookie_click,
        "conversion_tag": params.get("cid", ""),
        "event_name": params.get("event", ""),
        "value": value,
        "value_raw": raw_value if value is None else "",
        "currency": params.get("currency", "")[:16],
        "order_id": params.get("order_id", ""),
        "page": _text(next((v for k, v in scope["headers"] if k == b"referer"), b""), MAX_HEADER_IN_EVENT),
    }
    await st.record(event)
    st.stats.requests[("conversion", outcome, verdict.label)] += 1
    headers = [(b"content-type", b"image/gif"), (b"cache-control", b"no-store, max-age=0"), (b"expires", b"0")]
    await _respond(send, 200, headers, PIXEL_GIF, method == "HEAD")


class EdgeApp:
    """The ASGI application of the edge. The token and pixel paths are handled directly; the rest
    (``/healthz``, ``/metrics``, lifespan) by a Starlette app."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.state: EdgeState | None = None
        self._embedded: EmbeddedStore | None = None
        self.starlette = Starlette(
            routes=[Route("/healthz", self.healthz), Route("/metrics", self.metrics)],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[EdgeState]:
        """Starts the edge's resources (and an embedded store when no Redis URL is configured)."""
        url = self.settings.redis_url
        if url is None:
            self._embedded = EmbeddedStore(self.settings.data_dir)
            url = await asyncio.to_thread(self._embedded.start)
        state = EdgeState(self.settings, url)
        await state.start()
        self.state = state
        try:
            yield state
        finally:
            self.state = None
            await state.stop()
            if self._embedded is not None:
                await asyncio.to_thread(self._embedded.stop)
                self._embedded = None

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with self.running():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.state is not None:
            path = scope["path"]
            try:
                if path == "/c_t":
                    await handle_pixel(self.state, scope, send)
                    return
                if path == "/c_t.js":
                    await _respond(send, 200, list(_SCRIPT_HEADERS), CONVERSION_SCRIPT, scope["method"] == "HEAD")
                    return
                if path != "/healthz" and path != "/metrics":
                    await handle_redirect(self.state, scope, send)
                    return
            except Exception:
                log.exception("edge request failed")
                with contextlib.suppress(Exception):
                    await _respond(send, 503, [_HTML, _NO_CACHE], UNAVAILABLE_PAGE, False)
                return
        await self.starlette(scope, receive, send)

    async def healthz(self, request: Request) -> Response:
        st = self.state
        if st is None:
            return Response(orjson.dumps({"status": "starting"}), 503, media_type="application/json")
        started = time.perf_counter()
        try:
            await asyncio.wait_for(st.redis.ping(), 1.0)
            store_up, ping_ms = True, round((time.perf_counter() - started) * 1000, 3)
        except (RedisError, OSError, TimeoutError):
            store_up, ping_ms = False, None
        body = {
            "status": "ok" if store_up else "degraded",
            "store": {
                "up": store_up,
                "ping_ms": ping_ms,
                "url": redacted(st.redis_url),
            },
            "events": {
                "stream_up": st.writer.up,
                "committed": st.writer.committed,
                "spooled": st.writer.spooled,
                "replayed": st.writer.replayed,
                "spool_pending": st.writer.spool.pending,
            },
            "routing": {"cached_campaigns": len(st.cache), "following_updates": st.cache.connected},
            "sink": _sink_health(await st.backlog.get(), st.backlog.known),
        }
        return Response(orjson.dumps(body), 200, media_type="application/json", headers={"cache-control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        st = self.state
        if st is None:
            return Response(b"", 503)
        await st.backlog.get()
        return Response(metrics.render(st.collector), 200, media_type=metrics.CONTENT_TYPE)


def _sink_health(backlog: Backlog | None, known: bool) -> dict[str, Any]:
    """``/healthz``'s view of the sink: what waits in the stream for ClickHouse (``known`` false
    when Redis did not answer; the figures are then the last ones read, or null)."""
    return {
        "known": known,
        "backlog": backlog.events if backlog else None,
        "oldest_unsent_seconds": round(backlog.oldest_seconds, 3) if backlog else None,
    }


def create_app(settings: Settings | None = None) -> EdgeApp:
    """The edge application; ``uvicorn --factory shortcore.edge:create_app`` runs it."""
    return EdgeApp(settings)
