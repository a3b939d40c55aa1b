"""Campaign-level routing data: what the edge needs to turn a token into a redirect.

A campaign owns the contiguous sequence numbers ``[seq_start, seq_start + recipients * n_links)``;
the token of recipient ``r``'s link ``l`` is the token of ``seq_start + r * n_links + l``. So Redis
holds only per-campaign data and never a key per link:

``sc:seq``                  the allocation counter (``INCRBY``; numbers are never reused)
``sc:ranges``               sorted set, member = campaign id, score = its ``seq_start``
``sc:campaign:<id>``        the campaign as JSON (:class:`Campaign`)
``sc:domain:<host>``        a short domain as JSON (:class:`Domain`)
``sc:expiring``             sorted set, member = campaign id, score = when its routing data goes
``sc:routing:version``      incremented on every change; published with it on ``sc:routing``

Each edge process keeps a :class:`RouteCache`: the campaigns it has met, in memory, looked up by
binary search over their ranges. A change publishes ``<version> campaign:<id>`` (or
``domain:<host>``) on ``sc:routing`` and every cache drops that entry; a cache that was
disconnected compares the version key when it reconnects and starts afresh if it moved. While
Redis is unreachable, cached campaigns keep redirecting.

Campaigns registered with ``remove_at`` (transactional messages: one campaign each) are listed in
``sc:expiring``; :func:`sweep_expired` removes their routing data once that time has passed, so
Redis holds only the messages of the retention window however many are sent.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import orjson
from redis.exceptions import RedisError

from shortcore.store import AnyRedis
from shortcore.tokens import DEFAULT_TOKEN_LENGTH, TokenCodec

log = logging.getLogger(__name__)

SEQ_KEY: Final = "sc:seq"
RANGES_KEY: Final = "sc:ranges"
CAMPAIGN_KEY: Final = "sc:campaign:"
DOMAIN_KEY: Final = "sc:domain:"
EXPIRING_KEY: Final = "sc:expiring"
VERSION_KEY: Final = "sc:routing:version"
CHANNEL: Final = "sc:routing"

CLICK_PARAM: Final = "sc_click"
MAX_DESTINATION_LENGTH: Final = 4096
# Sorted-set scores are doubles: sequence numbers stay exact below 2**53.
MAX_SEQ: Final = 2**53 - 1

# Printable ASCII a URL may carry as is; everything else in a destination is percent-encoded.
_URL_SAFE: Final = "!#$%&'()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~"


class RoutingError(ValueError):
    """Campaign or domain data that the edge refuses to serve."""


def normalize_destination(url: str) -> str:
    """An absolute ``http``/``https`` URL, made ASCII (IDNA host, percent-encoded path and query).

    Raises :class:`RoutingError` for any other scheme, a missing host, credentials in the URL,
    control characters, or more than 4096 characters.
    """
    if not isinstance(url, str):
        raise RoutingError("a destination must be a string")
    url = url.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise RoutingError("a destination must not contain control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise RoutingError(f"not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise RoutingError("a destination must be an http or https URL")
    if not hostname:
        raise RoutingError("a destination must have a host")
    if parts.username is not None or parts.password is not None:
        raise RoutingError("a destination must not carry credentials")
    try:
        host = hostname.encode("idna").decode("ascii") if not hostname.isascii() else hostname
    except UnicodeError:
        raise RoutingError("the destination's host is not a valid domain name") from None
    if any(c in host for c in " /\\?#@"):
        raise RoutingError("the destination's host is not a valid domain name")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    path = quote(parts.path, safe=_URL_SAFE) or "/"
    query = quote(parts.query, safe=_URL_SAFE)
    fragment = quote(parts.fragment, safe=_URL_SAFE)
    result = urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))
    if len(result) > MAX_DESTINATION_LENGTH:
        raise RoutingError(f"a destination must be at most {MAX_DESTINATION_LENGTH} characters")
    return result


def _utm_pairs(utm: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not utm:
        return ()
    pairs = []
    for key, value in utm.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise RoutingError("UTM parameters must be strings")
        name = key if key.startswith("utm_") else f"utm_{key}"
        pairs.append((name, value))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """One destination, ready to answer: ``base`` (destination with UTM merged into its query),
    the separator before the click id, and the fragment that goes last."""

    base: str
    sep: str
    fragment: str

    def location(self, click_id: str | None) -> str:
        if click_id is None:
            return self.base + self.fragment
        return f"{self.base}{self.sep}{CLICK_PARAM}={click_id}{self.fragment}"


def link_target(destination: str, utm: Sequence[tuple[str, str]]) -> LinkTarget:
    """Merges the campaign's UTM parameters into ``destination``: the destination's own query
    comes first and wins (a parameter it already sets is not added again); the fragment stays last."""
    parts = urlsplit(destination)
    query = parts.query
    present = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
    extra = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in utm if k not in present)
    if extra:
        query = f"{query}&{extra}" if query else extra
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return LinkTarget(base=base, sep="&" if query else "?", fragment=fragment)


@dataclass(frozen=True, slots=True)
class Domain:
    """A short domain: its host, where unknown or expired links go, and its token length."""

    host: str
    fallback_url: str | None = None
    token_length: int = DEFAULT_TOKEN_LENGTH
    account: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "host": self.host,
                "fallback_url": self.fallback_url,
                "token_length": self.token_length,
                "account": self.account,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Domain:
        data = orjson.loads(raw)
        fallback = data.get("fallback_url")
        return cls(
            host=str(data["host"]),
            fallback_url=normalize_destination(fallback) if fallback else None,
            token_length=int(data.get("token_length", DEFAULT_TOKEN_LENGTH)),
            account=data.get("account"),
        )


def normalize_host(host: str) -> str:
    """``Host`` header or domain name → the key domains are stored under (lowercase, no port)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass(frozen=True, slots=True)
class VariantRoute:
    """One A/B variant of a campaign: its name, weight and destinations (see :mod:`shortcore.variants`)."""

    name: str
    weight: float
    destinations: tuple[str, ...]
    targets: tuple[LinkTarget, ...] = field(default=(), compare=False, repr=False)

    def with_targets(self, utm: Sequence[tuple[str, str]]) -> VariantRoute:
        """Targets with the campaign's UTM parameters and ``utm_content=<name>``, unless the
        campaign's UTM parameters set ``utm_content`` themselves."""
        pairs = tuple(utm) if any(k == "utm_content" for k, _ in utm) else (*utm, ("utm_content", self.name))
        targets = tuple(link_target(normalize_destination(d), pairs) for d in self.destinations)
        return VariantRoute(self.name, self.weight, self.destinations, targets)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, "destinations": list(self.destinations)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantRoute:
        return cls(str(data["name"]), float(data["weight"]), tuple(str(d) for d in data["destinations"]))


@dataclass(frozen=True, slots=True)
class Campaign:
    """Campaign-level routing data. Times are Unix seconds."""

    id: str
    account: str
    domain: str
    seq_start: int
    recipients: int
    destinations: tuple[str, ...]
    utm: tuple[tuple[str, str], ...] = ()
    click_param: bool = True
    sent_at: float | None = None
    expires_at: float | None = None
    token_length: int = DEFAULT_TOKEN_LENGTH
    targets: tuple[LinkTarget, ...] = field(default=(), compare=False, repr=False)
    #: A/B variants; empty for a campaign of one text. The first is the control.
    variants: tuple[VariantRoute, ...] = ()
    #: The key of the recipient → variant hash (hex), campaign-level like everything here.
    variant_seed: str = ""
    _slots: int = field(default=0, compare=False, repr=False)
    _assigner: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.destinations:
            raise RoutingError("a campaign needs at least one destination")
        if self.recipients < 0 or self.seq_start < 0:
            raise RoutingError("seq_start and recipients must be >= 0")
        if not self.targets:
            targets = tuple(link_target(normalize_destination(d), self.utm) for d in self.destinations)
            object.__setattr__(self, "targets", targets)
        slots = len(self.destinations)
        if self.variants:
            from shortcore.variants import VariantAssigner, VariantError

            routes = tuple(v if v.targets else v.with_targets(self.utm) for v in self.variants)
            if any(not v.destinations for v in routes):
                raise RoutingError("every variant needs at least one destination")
            try:
                assigner = VariantAssigner(self.variant_seed, [v.weight for v in routes])
            except VariantError as error:
                raise RoutingError(str(error)) from None
            object.__setattr__(self, "variants", routes)
            object.__setattr__(self, "_assigner", assigner)
            slots = max(len(v.destinations) for v in routes)
        object.__setattr__(self, "_slots", slots)

    @property
    def n_links(self) -> int:
        """Links per recipient in the token range (with variants: the most any variant has)."""
        return self._slots

    def variant_of(self, recipient: int) -> int:
        """The index of recipient ``recipient``'s variant (0 without variants)."""
        return int(self._assigner.variant_of(recipient)) if self.variants else 0

    def target(self, recipient: int, link: int) -> LinkTarget | None:
        """Where recipient ``recipient``'s link ``link`` goes; None for a link slot their
        variant does not use."""
        if not self.variants:
            return self.targets[link]
        targets = self.variants[self._assigner.variant_of(recipient)].targets
        return targets[link] if link < len(targets) else None

    @property
    def seq_count(self) -> int:
        return self.recipients * self.n_links

    @property
    def seq_end(self) -> int:
        """One past the campaign's last sequence number."""
        return self.seq_start + self.seq_count

    def seq(self, recipient: int, link: int) -> int:
        if not (0 <= recipient < self.recipients and 0 <= link < self.n_links):
            raise RoutingError("recipient or link index out of range")
        return self.seq_start + recipient * self.n_links + link

    def locate(self, seq: int) -> tuple[int, int]:
        """``(recipient index, link index)`` of a sequence number inside this campaign."""
        return divmod(seq - self.seq_start, self.n_links)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "account": self.account,
                "domain": self.domain,
                "seq_start": self.seq_start,
                "recipients": self.recipients,
                "destinations": list(self.destinations),
                "utm": dict(self.utm) if self.utm else None,
                "click_param": self.click_param,
                "sent_at": self.sent_at,
                "expires_at": self.expires_at,
                "token_length": self.token_length,
                **(
                    {"variants": [v.to_json() for v in self.variants], "variant_seed": self.variant_seed}
                    if self.variants
                    else {}
                ),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Campaign:
        data = orjson.loads(raw)
        return cls(
            id=str(data["id"]),
            account=str(data["account"]),
            domain=str(data["domain"]),
            seq_start=int(data["seq_start"]),
            recipients=int(data["recipients"]),
            destinations=tuple(str(d) for d in data["destinations"]),
            utm=_utm_pairs(data.get("utm")),
            click_param=bool(data.get("click_param", True)),
            sent_at=_opt_float(data.get("sent_at")),
            expires_at=_opt_float(data.get("expires_at")),
            token_length=int(data.get("token_length", DEFAULT_TOKEN_LENGTH)),
            variants=tuple(VariantRoute.from_json(v) for v in data.get("variants") or ()),
            variant_seed=str(data.get("variant_seed") or ""),
        )


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    result = float(value)
    if not math.isfinite(result):
        raise RoutingError("times must be finite numbers")
    return result


# ---------------------------------------------------------------------------------------------
# Writing routing data (the control API's side; tests use it directly).


async def _publish(redis: AnyRedis, what: str) -> None:
    version = await redis.incr(VERSION_KEY)
    await redis.publish(CHANNEL, f"{version} {what}")


async def allocate_seqs(redis: AnyRedis, count: int) -> int:
    """Reserves ``count`` consecutive sequence numbers with one ``INCRBY``; returns the first."""
    if count <= 0:
        raise RoutingError("count must be > 0")
    end = int(await redis.incrby(SEQ_KEY, count))
    if end > MAX_SEQ:
        raise RoutingError("the sequence space is exhausted")
    return end - count


async def register_domain(
    redis: AnyRedis,
    host: str,
    *,
    fallback_url: str | None = None,
    token_length: int = DEFAULT_TOKEN_LENGTH,
    account: str | None = None,
) -> Domain:
    """Creates or replaces a short domain."""
    TokenCodec(b"check", token_length)  # raises InvalidArgumentError outside 6..=12
    domain = Domain(
        host=normalize_host(host),
        fallback_url=normalize_destination(fallback_url) if fallback_url else None,
        token_length=token_length,
        account=account,
    )
    await redis.set(DOMAIN_KEY + domain.host, domain.to_json())
    await _publish(redis, f"domain:{domain.host}")
    return domain


async def get_domain(redis: AnyRedis, host: str) -> Domain | None:
    raw = await redis.get(DOMAIN_KEY + normalize_host(host))
    return None if raw is None else Domain.from_json(raw)


async def register_campaign(
    redis: AnyRedis,
    *,
    id: str,
    account: str,
    domain: str,
    recipients: int,
    destinations: Sequence[str],
    utm: Mapping[str, str] | None = None,
    click_param: bool = True,
    sent_at: float | None = None,
    expires_at: float | None = None,
    token_length: int | None = None,
    seq_start: int | None = None,
    variants: Sequence[VariantRoute] = (),
    variant_seed: str = "",
    remove_at: float | None = None,
) -> Campaign:
    """Stores a campaign's routing data and makes every edge see it.

    Allocates ``recipients * len(destinations)`` sequence numbers unless ``seq_start`` is given
    (a range allocated earlier with :func:`allocate_seqs`); with ``variants``, the range has the
    most links any variant has per recipient. The token length defaults to the domain's. With
    ``remove_at`` (epoch seconds), :func:`sweep_expired` removes the routing data after that time.
    Raises :class:`RoutingError` for a destination that is not http(s) and the like.
    """
    host = normalize_host(domain)
    if token_length is None:
        known = await get_domain(redis, host)
        token_length = known.token_length if known else DEFAULT_TOKEN_LENGTH
    draft = Campaign(
        id=id,
        account=account,
        domain=host,
        seq_start=0,
        recipients=recipients,
        destinations=tuple(destinations),
        utm=_utm_pairs(utm),
        click_param=click_param,
        sent_at=_opt_float(sent_at),
        expires_at=_opt_float(expires_at),
        token_length=token_length,
        variants=tuple(variants),
        variant_seed=variant_seed,
    )
    codec = TokenCodec(b"check", token_length)
    if seq_start is None:
        seq_start = await allocate_seqs(redis, max(draft.seq_count, 1))
    campaign = dataclasses.replace(draft, seq_start=seq_start)
    if campaign.seq_end - 1 > codec.max_seq:
        raise RoutingError(f"sequence numbers up to {campaign.seq_end - 1} do not fit {token_length}-character tokens")
    if remove_at is not None:
        # Listed for removal before it exists: a crash in between leaves a removal of nothing,
        # never routing data that no sweep will find.
        await redis.zadd(EXPIRING_KEY, {campaign.id: float(remove_at)})
    # Data first, then the index: an edge that finds the range always finds the campaign.
    await redis.set(CAMPAIGN_KEY + campaign.id, campaign.to_json())
    await redis.zadd(RANGES_KEY, {campaign.id: campaign.seq_start})
    await _publish(redis, f"campaign:{campaign.id}")
    return campaign


async def update_campaign(redis: AnyRedis, campaign: Campaign) -> None:
    """Replaces a campaign's data (new destinations, expiry…); its range cannot move."""
    await redis.set(CAMPAIGN_KEY + campaign.id, campaign.to_json())
    await _publish(redis, f"campaign:{campaign.id}")


async def delete_campaign(redis: AnyRedis, campaign_id: str) -> None:
    """Removes a campaign; its sequence numbers stay allocated and become unknown tokens."""
    await redis.zrem(RANGES_KEY, campaign_id)
    await redis.delete(CAMPAIGN_KEY + campaign_id)
    await _publish(redis, f"campaign:{campaign_id}")


async def sweep_expired(redis: AnyRedis, now: float, limit: int = 1_000) -> int:
    """Removes the routing data of campaigns whose ``remove_at`` has passed, at most ``limit`` of
    them; returns how many. Their tokens then answer as unknown. Safe to run in several
    processes at once: each removal is idempotent."""
    due = await redis.zrangebyscore(EXPIRING_KEY, "-inf", now, start=0, num=limit)
    ids = [cid.decode() if isinstance(cid, bytes) else str(cid) for cid in due]
    for campaign_id in ids:
        await delete_campaign(redis, campaign_id)
    if ids:
        await redis.zrem(EXPIRING_KEY, *ids)
    return len(ids)


async def sweep_forever(redis: AnyRedis, stop: asyncio.Event, interval: float = 60.0) -> None:
    """Runs :func:`sweep_expired` every ``interval`` seconds until ``stop`` is set; a Redis
    outage is logged and retried at the next round."""
    while not stop.is_set():
        try:
            while await sweep_expired(redis, time.time()) > 0 and not stop.is_set():
                pass
        except (RedisError, OSError) as exc:
            log.warning("sweeping expired routing data failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


# ---------------------------------------------------------------------------------------------
# Reading routing data on the edge.


class _Miss:
    """Returned by :meth:`RouteCache.find` when only Redis can tell."""


MISS: Final = _Miss()


class RouteCache:
    """The campaigns and domains one edge process has met, kept fresh through ``sc:routing``.

    ``find`` and ``domain`` answer from memory, or return :data:`MISS` when Redis must be asked
    (``load`` / ``load_domain``); a miss that Redis answers "nothing" is remembered for a few
    seconds so probing does not turn into Redis traffic.
    """

    NEGATIVE_TTL: Final = 5.0
    NEGATIVE_MAX: Final = 50_000

    def __init__(self, redis: AnyRedis, *, poll_interval: float = 2.0) -> None:
        self.redis = redis
        self.poll_interval = poll_interval
        self._starts: list[int] = []
        self._campaigns: list[Campaign] = []
        self._by_id: dict[str, Campaign] = {}
        self._domains: dict[str, Domain | None] = {}
        self._domain_expiry: dict[str, float] = {}
        self._negative: dict[int, float] = {}
        self._allocated = 0
        self._allocated_at = -math.inf
        self._version: int | None = None
        self.connected = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._campaigns)

    # -- lookups -------------------------------------------------------------------------------

    def find(self, seq: int, now: float) -> Campaign | _Miss | None:
        i = bisect.bisect_right(self._starts, seq) - 1
        if i >= 0:
            campaign = self._campaigns[i]
            if seq < campaign.seq_end:
                return campaign
        if seq >= self._allocated and now - self._allocated_at < 1.0:
            return None  # beyond every allocated number, as of a moment ago
        expiry = self._negative.get(seq)
        if expiry is not None and expiry > now:
            return None
        return MISS

    async def load(self, seq: int) -> Campaign | None:
        """Asks Redis which campaign owns ``seq``. Raises ``RedisError``/``OSError`` when it is down."""
        now = time.monotonic()
        if seq >= self._allocated:
            self._allocated = int(await self.redis.get(SEQ_KEY) or 0)
            self._allocated_at = now
            if seq >= self._allocated:
                return None
        found = await self.redis.zrevrangebyscore(RANGES_KEY, seq, "-inf", start=0, num=1)
        campaign = None
        if found:
            cid = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
            campaign = self._by_id.get(cid)
            if campaign is None:
                raw = await self.redis.get(CAMPAIGN_KEY + cid)
                if raw is not None:
                    try:
                        campaign = Campaign.from_json(raw)
                    except (RoutingError, ValueError, KeyError, TypeError) as exc:
                        log.error("campaign %s has unusable routing data: %s", cid, exc)
                        campaign = None
                    if campaign is not None:
                        self._insert(campaign)
        if campaign is None or not campaign.seq_start <= seq < campaign.seq_end:
            if len(self._negative) >= self.NEGATIVE_MAX:
                self._negative.clear()
            self._negative[seq] = now + self.NEGATIVE_TTL
            return None
        return campaign

    def domain(self, host: str, now: float) -> Domain | _Miss | None:
        if host in self._domains and self._domain_expiry.get(host, math.inf) > now:
            return self._domains[host]
        return MISS

    async def load_domain(self, host: str) -> Domain | None:
        raw = await self.redis.get(DOMAIN_KEY + host)
        domain: Domain | None = None
        if raw is not None:
            try:
                domain = Domain.from_json(raw)
            except (RoutingError, ValueError, KeyError, TypeError) as exc:
                log.error("domain %s has unusable data: %s", host, exc)
        if len(self._domains) >= self.NEGATIVE_MAX:
            self._domains.clear()
            self._domain_expiry.clear()
        self._domains[host] = domain
        if domain is None:
            self._domain_expiry[host] = time.monotonic() + self.NEGATIVE_TTL
        else:
            self._domain_expiry.pop(host, None)
        return domain

    # -- keeping fresh -------------------------------------------------------------------------

    def _insert(self, campaign: Campaign) -> None:
        self._drop(campaign.id)
        i = bisect.bisect_right(self._starts, campaign.seq_start)
        self._starts.insert(i, campaign.seq_start)
        self._campaigns.insert(i, campaign)
        self._by_id[campaign.id] = campaign

    def _drop(self, campaign_id: str) -> None:
        old = self._by_id.pop(campaign_id, None)
        if old is None:
            return
        i = bisect.bisect_left(self._starts, old.seq_start)
        while i < len(self._campaigns) and self._starts[i] == old.seq_start:
            if self._campaigns[i].id == campaign_id:
                del self._starts[i], self._campaigns[i]
                break
            i += 1

    def clear(self) -> None:
        self._starts.clear()
        self._campaigns.clear()
        self._by_id.clear()
        self._domains.clear()
        self._domain_expiry.clear()
        self._negative.clear()
        self._allocated_at = -math.inf

    def apply(self, message: str) -> None:
        """Applies one ``sc:routing`` message: ``<version> campaign:<id>`` or ``<version> domain:<host>``."""
        version, _, what = message.partition(" ")
        with contextlib.suppress(ValueError):
            self._version = int(version)
        kind, _, key = what.partition(":")
        if kind == "campaign":
            self._drop(key)
            self._negative.clear()
            self._allocated_at = -math.inf
        elif kind == "domain":
            self._domains.pop(key, None)
            self._domain_expiry.pop(key, None)
        else:
            self.clear()

    async def _check_version(self) -> None:
        version = int(await self.redis.get(VERSION_KEY) or 0)
        if self._version is not None and version != self._version:
            self.clear()
        self._version = version

    async def watch(self) -> None:
        """Runs until cancelled: follows ``sc:routing``, reconnecting after outages. Redis
        Cluster clients poll the version key instead of subscribing."""
        while not self.closed:
            try:
                if hasattr(self.redis, "pubsub") and not hasattr(self.redis, "get_nodes"):
                    await self._follow()
                else:
                    await self._check_version()
                    self.connected = True
                    await asyncio.sleep(self.poll_interval)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if self.closed or (task is not None and task.cancelling()):
                    # redis-py may turn a cancellation into a connection error; honour it.
                    raise asyncio.CancelledError from exc
                if self.connected:
                    log.warning("routing updates interrupted: %s", exc)
                self.connected = False
                await asyncio.sleep(0.5)

    async def _follow(self) -> None:
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            await self._check_version()
            self.connected = True
            while not self.closed:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_interval)
                if message is None:
                    await self._check_version()
                    continue
                data = message.get("data")
                if isinstance(data, bytes):
                    self.apply(data.decode("utf-8", "replace"))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
