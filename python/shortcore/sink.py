"""The event sink: the Redis stream ``sc:{events}`` into ClickHouse ``shortcore.events``, exactly once.

The sink reads new entries in batches (by size and by time) with ``XREAD`` after the position of
the consumer group ``sink``, inserts each batch, and only then acknowledges it by moving the
group's position to the batch's last id (``XGROUP SETID``, forward only): no pending entry per
event to create and delete. A sink that dies before that leaves the position where it was, and
the batch is read again. Pending entries left by ``XREADGROUP`` readers of the group are taken
over with ``XAUTOCLAIM`` once idle long enough, and acknowledged with ``XACK``. So every event is
inserted at least once, and duplicates collapse:

* each batch is inserted with an ``insert_deduplication_token`` made of its first and last
  stream ids, so a batch replayed whole is dropped by ClickHouse itself;
* ``events`` is a ``ReplacingMergeTree`` ordered by ``(campaign_id, time, event_id)``, so a
  replay cut differently collapses at merge time, and every figure shown to a user reads
  ``FINAL`` (or counts distinct event ids), which is exact before merges.

Per event, nothing runs in Python: :class:`~shortcore._core.EventDecoder` (Rust, without the GIL)
checks each entry (a truncated or ill-typed one goes to the dead-letter stream
``sc:{events}:dead`` with the reason), adds the user agent's versions and the header's country,
applies the sequence rules and the privacy options, and writes one ``Native`` block for one
``INSERT``. Python adds what needs ClickHouse or Python: campaigns' numbers of links and A/B
variants (each event of a variant campaign's recipient carries the variant's name, so figures per
variant need no join with ``messages``), conversion attribution, MaxMind countries. Should
ClickHouse still refuse a block, it is split in halves until the refused rows are found; they are
dead-lettered and the rest goes in.

One sink works at a time, the holder of a lease in Redis (:mod:`shortcore.sinklease`); others
stand by and take over when it stops or dies. New entries are read as raw bytes and split in
Rust (:mod:`shortcore.streamread`), so no Python object is made per entry.

ClickHouse unreachable: the batch is retried with exponential backoff and nothing is
acknowledged; the edge keeps writing to Redis, so redirects are unaffected. The backlog and the
age of the oldest event not yet in ClickHouse come from the stream itself (:func:`stream_backlog`),
so any process (the edge's ``/metrics`` and ``/healthz``) can show them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, overload

import orjson
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shortcore._core import EncodedRows, EventBatch, EventDecoder, StreamEntries, VariantLinks
from shortcore.analytics import DATABASE, AnalyticsStore
from shortcore.backlog import GROUP as GROUP
from shortcore.backlog import STREAM_KEY as STREAM_KEY
from shortcore.backlog import stream_backlog as stream_backlog
from shortcore.conversions import Attribution
from shortcore.sinklease import SinkLease
from shortcore.store import AnyRedis
from shortcore.streamread import StreamReader, client_url
from shortcore.variants import sibling_links

log = logging.getLogger(__name__)

# Must match shortcore.events (the edge's writer).
EVENT_FIELD: Final = b"e"
EVENT_VERSION: Final = 1

DEAD_KEY: Final = "sc:{events}:dead"
DEAD_MAXLEN: Final = 100_000

SIBLING_BURST: Final = "bot:sibling-burst"
SWEEP: Final = "bot:sweep"


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class SinkSettings:
    """The sink's tunables, from ``SHORTCORE_SINK_*`` and a few ``SHORTCORE_*`` privacy and
    enrichment variables (see :meth:`from_env`)."""

    #: Events per insert at most, and seconds the first event of a batch may wait for more.
    #: Large enough that a draining backlog makes few parts to merge (see docs/analytics.md).
    batch_size: int = 50_000
    batch_wait: float = 0.2
    #: Pending events of a consumer idle this long are taken over.
    claim_idle: float = 30.0
    #: Backoff while ClickHouse refuses: from ``retry_min`` doubling up to ``retry_max`` seconds.
    retry_min: float = 0.25
    retry_max: float = 30.0
    #: A request header carrying the client's country (``CF-IPCountry``, ``CloudFront-Viewer-Country``…).
    country_header: str | None = None
    #: A MaxMind-format country or city database (``.mmdb``), read with the ``maxminddb`` package.
    geoip_db: Path | None = None
    #: Store client addresses cut to their /24 (IPv4) or /48 (IPv6) network.
    truncate_ip: bool = False
    #: Store the user agent string (browser, OS and device are stored either way).
    store_user_agent: bool = True
    #: ``bot:sibling-burst``: every link of one message hit by people within this many seconds.
    sibling_window: float = 2.0
    #: ``bot:sweep``: one client (address and user agent) on this many recipients' links within
    #: ``sweep_window`` seconds. 0 turns the rule off.
    sweep_recipients: int = 5
    sweep_window: float = 5.0
    consumer: str | None = None
    #: Seconds the active sink's lease lasts unless renewed (see :mod:`shortcore.sinklease`): how
    #: long standby sinks wait before taking over from one that died.
    lease_ttl: float = 10.0

    def __post_init__(self) -> None:
        if not self.lease_ttl > 0:
            raise ValueError(f"SHORTCORE_SINK_LEASE_TTL must be positive, got {self.lease_ttl}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SinkSettings:
        """``SHORTCORE_SINK_BATCH_SIZE`` … ``SHORTCORE_SINK_CONSUMER`` for the sink's own fields;
        ``SHORTCORE_COUNTRY_HEADER``, ``SHORTCORE_GEOIP_DB``, ``SHORTCORE_TRUNCATE_IP`` and
        ``SHORTCORE_STORE_USER_AGENT`` for the deployment-wide ones."""
        env = os.environ if environ is None else environ
        deployment = {"country_header", "geoip_db", "truncate_ip", "store_user_agent"}
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ("SHORTCORE_" if f.name in deployment else "SHORTCORE_SINK_") + f.name.upper()
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            kind = str(f.type)
            try:
                if kind.startswith("bool"):
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(f"expected true or false, got {raw!r}")
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif kind.startswith("int"):
                    values[f.name] = int(raw)
                elif kind.startswith("float"):
                    values[f.name] = float(raw)
                elif "Path" in kind:
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return cls(**values)


# ---------------------------------------------------------------------------------------------
# From the edge's JSON to the table's rows

#: A batch of stream entries: ``(id, fields)`` pairs as redis-py gives them, or the entries of
#: raw replies (both index as ``(id, [b"e", event])``).
Entries = Sequence[Sequence[Any]] | StreamEntries

#: The columns the sink writes, in the order of :class:`~shortcore._core.EventDecoder`'s rows.
EVENT_COLUMNS: Final = (
    "event_id", "time", "type", "outcome", "account", "campaign_id", "domain", "token", "recipient_index",
    "link_index", "class", "reason", "edge_class", "edge_reason", "method", "ip", "user_agent", "headers",
    "browser", "browser_version", "os", "os_version", "device", "country", "click_id", "conversion_tag",
    "event_name", "value", "currency", "order_id", "page", "revision", "variant",
)  # fmt: skip


@dataclass(slots=True)
class Row:
    """One event as Python code sees it (conversion attribution, the webhook outbox): the bytes
    from the stream, the parsed event, and what the sink added (``_``-prefixed keys)."""

    stream_id: bytes
    raw: bytes
    event: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _row(batch: EventBatch, position: int) -> Row:
    raw = batch.raw(position)
    return Row(batch.stream_id(position), raw, orjson.loads(raw), batch.extra(position))


class BatchRows(Sequence[Row]):
    """Events of a batch as :class:`Row`, parsed only when looked at: the webhook outbox looks
    only when an endpoint exists, and the batch's other work never leaves Rust."""

    def __init__(self, batch: EventBatch, positions: Sequence[int]) -> None:
        self.batch = batch
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Row]: ...
    def __getitem__(self, index: int | slice) -> Row | Sequence[Row]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _row(self.batch, self.positions[index])


# ---------------------------------------------------------------------------------------------
# Enrichment that needs Python


class GeoCountries:
    """Countries of client addresses from a MaxMind-format database (MaxMind's ``maxminddb``
    reader), cached by address. Countries from a trusted header are found in Rust."""

    def __init__(self, path: Path) -> None:
        try:
            import maxminddb  # type: ignore[import-not-found, unused-ignore]
        except ImportError as error:
            raise ValueError("SHORTCORE_GEOIP_DB needs the maxminddb package (pip install maxminddb)") from error
        self._reader: Any = maxminddb.open_database(str(path))
        self._countries: dict[str, str] = {}

    def lookup(self, addresses: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for ip in addresses:
            country = self._countries.get(ip)
            if country is None:
                if len(self._countries) > 100_000:
                    self._countries.clear()
                country = self._country(ip)
                self._countries[ip] = country
            if country:
                out[ip] = country
        return out

    def _country(self, ip: str) -> str:
        try:
            record = self._reader.get(ip)
        except ValueError:
            return ""
        if not isinstance(record, dict):
            return ""
        found = record.get("country") or record.get("registered_country") or {}
        return str(found.get("iso_code", "")) if isinstance(found, dict) else ""

    def close(self) -> None:
        self._reader.close()


# ---------------------------------------------------------------------------------------------
# Inserting


def is_connection_error(error: BaseException) -> bool:
    """Whether an insert failed because ClickHouse is unreachable (retry later) rather than
    because of the data (find the bad entries)."""
    from clickhouse_connect.driver.exceptions import OperationalError

    return isinstance(error, OperationalError | OSError | TimeoutError)


@dataclass(slots=True)
class PreparedBatch:
    """A batch checked and encoded: ``encoded`` holds the batch's events, then events of earlier
    batches a sequence rule reclassified; ``dead`` the entries refused, with the reason."""

    batch: EventBatch
    encoded: EncodedRows
    dead: list[tuple[bytes, bytes, str]]
    revisions: list[int]

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def rows(self) -> BatchRows:
        """The batch's events as stored (after attribution)."""
        return BatchRows(self.batch, range(len(self.batch)))

    def again(self, refused: Sequence[tuple[bytes, bytes, str]]) -> list[Row]:
        """Events of earlier batches a sequence rule reclassified while judging this one, as
        re-inserted (their ``extra`` has the new ``_class``, ``_reason`` and ``_revision``)."""
        encoded, refused_ids = self.encoded, {stream_id for stream_id, _, _ in refused}
        rows = []
        for i in range(encoded.batch_len, len(encoded)):
            stream_id = encoded.stream_id(i)
            if stream_id not in refused_ids:
                raw = encoded.raw(i)
                rows.append(Row(stream_id, raw, orjson.loads(raw), encoded.extra(i)))
        return rows

    def inserted(self, refused: Sequence[tuple[bytes, bytes, str]]) -> BatchRows:
        """The batch's own events that went in, for :data:`AfterInsert`."""
        positions: Sequence[int] = range(len(self.batch))
        if refused:
            refused_ids = {stream_id for stream_id, _, _ in refused}
            positions = [p for p in positions if self.batch.stream_id(p) not in refused_ids]
        return BatchRows(self.batch, positions)


#: ``optimize_on_insert`` off: ReplacingMergeTree would otherwise merge each block with itself
#: on the way in, a sorted pass copying every column, for duplicates a block hardly ever has (a
#: batch reads each stream entry once; an event's revision goes in a later batch than the event).
#: It was half of an insert's time, measured. Duplicates collapse at merge time, and every figure
#: reads ``FINAL`` or counts distinct event ids, so none is counted twice meanwhile.
INSERT_SETTINGS: Final = {"optimize_on_insert": 0}


class EventInserter:
    """Turns a batch of stream entries into rows of ``events``; runs on the analytics thread.

    Checking, enrichment, the sequence rules and the encoding are done in Rust, without the GIL
    (:class:`~shortcore._core.EventDecoder`); Python adds what needs ClickHouse or Python: the
    number of links and the variants of each campaign, conversion attribution, and MaxMind
    countries."""

    def __init__(self, settings: SinkSettings, attribution: Attribution | None = None) -> None:
        self.settings = settings
        self.attribution = attribution or Attribution()
        self.decoder = EventDecoder(
            truncate_ip=settings.truncate_ip,
            store_user_agent=settings.store_user_agent,
            country_header=settings.country_header,
            sibling_window_ms=int(settings.sibling_window * 1000),
            sweep_recipients=settings.sweep_recipients,
            sweep_window_ms=int(settings.sweep_window * 1000),
        )
        self.geo = GeoCountries(settings.geoip_db) if settings.geoip_db is not None else None
        self._links: dict[str, int | VariantLinks] = {}

    def prepare(self, client: Client | None, entries: Entries) -> PreparedBatch:
        """Checks, enriches and judges a batch. Entries are ``(stream id, fields)`` as a stream
        reply gives them (or ``(stream id, event bytes)``), or a raw reply's :class:`StreamEntries`."""
        batch = self.decoder.decode(entries)
        dead = [(_bytes(entries[i][0]), _field(entries[i][1]) or b"", reason) for i, reason in batch.dead]
        conversions = batch.of_kind("conversion")
        if conversions:
            self._attribute(client, batch, conversions)
        # The campaigns of all events, attributed conversions included: the sibling rule reads the
        # links of human clicks' campaigns only, but every event of a variant campaign's recipient
        # gets the variant.
        campaigns = batch.campaigns()
        unknown = [c for c in campaigns if c not in self._links]
        if unknown and client is not None:
            self._load_links(client, unknown)
        links = {c: self._links.get(c, 0) for c in campaigns}
        countries = self.geo.lookup(batch.addresses_without_country()) if self.geo is not None else {}
        rows = self.decoder.encode(batch, links, countries)
        return PreparedBatch(batch, rows, dead, rows.revisions)

    def _attribute(self, client: Client | None, batch: EventBatch, positions: list[int]) -> None:
        """Conversions get their click's campaign, recipient and link (:class:`Attribution`,
        which needs the clicks they name when those are in the same batch)."""
        conversions = [_row(batch, p) for p in positions]
        # Clicks of this batch that conversions name by a genuine (signed) click id.
        named = {
            event_id
            for row in conversions
            for c in (row.event.get("click_param"), row.event.get("click_cookie"), row.event.get("click_id"))
            if isinstance(c, str) and c and (event_id := self.attribution.named_click(c)) is not None
        }
        clicks = [_row(batch, p) for p in batch.clicks(sorted(named))] if named else []
        self.attribution.attribute(client, [*clicks, *conversions])
        for position, row in zip(positions, conversions, strict=True):
            reason = self.decoder.replace(batch, position, row.raw)
            if reason is not None:  # kept as the edge wrote it
                log.warning("conversion %s unchanged after attribution: %s", row.event.get("event_id"), reason)

    def _load_links(self, client: Client, campaigns: list[str]) -> None:
        if len(self._links) > 100_000:
            self._links.clear()
        found = client.query(
            f"SELECT id, links, variants FROM {DATABASE}.campaigns FINAL WHERE id IN %(ids)s",
            parameters={"ids": campaigns},
        ).result_rows
        for campaign, links, variants in found:
            # A variant campaign's own links and name per variant (its `links` is the most any has).
            self._links[campaign] = sibling_links(int(links), variants)
        # A campaign not (yet) in the table: no sibling rule and no variants until it is.
        for campaign in campaigns:
            if campaign not in self._links:
                self._links[campaign] = 0 if len(found) == len(campaigns) else -1
        for campaign in [c for c, n in self._links.items() if n == -1]:
            del self._links[campaign]

    def insert(self, client: Client, body: bytes, token: str) -> None:
        """One ``INSERT … FORMAT Native`` of one block; raises what ClickHouse raises."""
        client.raw_insert(
            f"{DATABASE}.events",
            EVENT_COLUMNS,
            insert_block=body,
            settings=INSERT_SETTINGS | {"insert_deduplication_token": token},
            fmt="Native",
        )

    def insert_batch(self, client: Client, batch: PreparedBatch) -> list[tuple[bytes, bytes, str]]:
        """Inserts a prepared batch; returns the entries ClickHouse refused (with its reason).
        Raises when ClickHouse is unreachable: nothing of the batch may be acknowledged then."""
        refused: list[tuple[bytes, bytes, str]] = []
        self._insert_or_split(client, batch, 0, len(batch.revisions), refused)
        return refused

    def _insert_or_split(
        self, client: Client, batch: PreparedBatch, lo: int, hi: int, refused: list[tuple[bytes, bytes, str]]
    ) -> None:
        if lo >= hi:
            return
        # Same entries, same token: a batch replayed whole is dropped by ClickHouse. Reclassified
        # rows (a higher revision) make a different token, so they are never dropped.
        rows = batch.encoded
        revisions = sum(batch.revisions[lo:hi])
        token = f"{rows.stream_id(lo).decode()}/{rows.stream_id(hi - 1).decode()}/{hi - lo}/{revisions}"
        body = rows.body if lo == 0 and hi == len(rows) else rows.native(lo, hi)
        try:
            self.insert(client, body, token)
            return
        except Exception as error:
            if is_connection_error(error) or not _answers(client):
                raise
            if hi - lo == 1:
                refused.append((rows.stream_id(lo), rows.raw(lo), _reason(error)))
                return
        half = (lo + hi) // 2
        self._insert_or_split(client, batch, lo, half, refused)
        self._insert_or_split(client, batch, half, hi, refused)

    def close(self) -> None:
        if self.geo is not None:
            self.geo.close()


def _answers(client: Client) -> bool:
    try:
        client.query("SELECT 1")
    except Exception:
        return False
    return True


def _reason(error: BaseException) -> str:
    text = str(error).replace("\n", " ")
    text = re.sub(r"\(in file/uri [^)]*\)", "", text)
    return text[:500]


#: What the sink hands each inserted batch to (the webhook outbox): the batch's rows, and the
#: rows of earlier batches that a sequence rule reclassified while judging it (re-inserted with a
#: higher revision).
AfterInsert = Callable[[Sequence[Row], Sequence[Row]], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# Status


@dataclass
class SinkStatus:
    """What the sink has done, for ``/metrics`` and ``/healthz``. ``backlog`` and
    ``oldest_unsent_seconds`` are refreshed from the stream every couple of seconds."""

    inserted: int = 0
    dead_lettered: int = 0
    batches: int = 0
    insert_failures: int = 0
    clickhouse_up: bool = True
    backlog: int = 0
    oldest_unsent_seconds: float = 0.0
    last_insert_at: float = 0.0
    #: Whether this sink holds the lease (works) rather than standing by, and who holds it.
    active: bool = False
    lease_holder: str | None = None
    registry: CollectorRegistry = field(default_factory=CollectorRegistry, repr=False)

    def __post_init__(self) -> None:
        r = self.registry
        self._inserted = Counter("shortcore_sink_events_inserted", "Events inserted into ClickHouse", registry=r)
        self._dead = Counter("shortcore_sink_events_dead_lettered", "Events sent to the dead-letter stream", registry=r)
        self._failures = Counter("shortcore_sink_insert_failures", "Inserts that failed and were retried", registry=r)
        Gauge("shortcore_sink_backlog", "Events in the stream not yet in ClickHouse", registry=r).set_function(
            lambda: self.backlog
        )
        Gauge(
            "shortcore_sink_oldest_unsent_seconds", "Age of the oldest event not yet in ClickHouse", registry=r
        ).set_function(lambda: self.oldest_unsent_seconds)
        Gauge("shortcore_sink_clickhouse_up", "1 when the last insert succeeded", registry=r).set_function(
            lambda: 1 if self.clickhouse_up else 0
        )
        active = Gauge("shortcore_sink_active", "1 when this sink holds the lease, 0 when it stands by", registry=r)
        active.set_function(lambda: 1 if self.active else 0)

    def count(self, inserted: int, dead: int) -> None:
        self.inserted += inserted
        self.dead_lettered += dead
        self.batches += 1
        self._inserted.inc(inserted)
        self._dead.inc(dead)

    def failed(self) -> None:
        self.insert_failures += 1
        self._failures.inc()

    def snapshot(self) -> dict[str, Any]:
        return {
            "clickhouse_up": self.clickhouse_up,
            "inserted": self.inserted,
            "dead_lettered": self.dead_lettered,
            "batches": self.batches,
            "insert_failures": self.insert_failures,
            "backlog": self.backlog,
            "oldest_unsent_seconds": round(self.oldest_unsent_seconds, 3),
            "active": self.active,
            "lease_holder": self.lease_holder,
        }


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# The consumer


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class EventSink:
    """Reads the stream as one consumer of group ``sink`` and inserts into ``analytics``."""

    def __init__(
        self,
        redis: AnyRedis,
        analytics: AnalyticsStore,
        settings: SinkSettings | None = None,
        *,
        status: SinkStatus | None = None,
        attribution: Attribution | None = None,
        after_insert: AfterInsert | None = None,
    ) -> None:
        self.redis = redis
        #: Called with each batch once it is in ClickHouse, before it is acknowledged (webhooks).
        self.after_insert = after_insert
        # Stream replies as the parser gives them (nested lists of bytes): redis-py's own reshaping
        # of them costs as much as the read itself. A client of its own on the same connections.
        self._raw: AnyRedis = redis
        if isinstance(redis, aioredis.Redis):
            self._raw = aioredis.Redis(connection_pool=redis.connection_pool)
            self._raw.response_callbacks.pop("XREADGROUP", None)
        # New entries are read as raw bytes on a connection of the sink's own (not on a cluster).
        url = client_url(redis)
        self._stream = StreamReader(url) if url is not None else None
        self.analytics = analytics
        self.settings = settings or SinkSettings()
        self.consumer = self.settings.consumer or default_consumer()
        self.status = status or SinkStatus()
        self.inserter = EventInserter(self.settings, attribution)
        self.lease = SinkLease(redis, self.consumer, self.settings.lease_ttl)
        self._claim_from = "0-0"
        #: The last new entry read, and the group's count of entries read (None: unknown).
        self._cursor = "0-0"
        self._entries_read: int | None = 0
        self._next_claim = 0.0
        self._next_backlog = 0.0

    async def ensure_group(self) -> None:
        """Creates the group at the start of the stream (so events written before the first
        start are kept), and the stream with it."""
        try:
            await self.redis.xgroup_create(STREAM_KEY, GROUP, id="0", mkstream=True)
        except Exception as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: stand by until this sink holds the lease, then read, insert,
        acknowledge while it does. A batch in flight when ``stop`` is set is finished if
        ClickHouse takes it, else left for the next start."""
        await self.ensure_group()
        self.status.active = False
        try:
            while not stop.is_set():
                try:
                    await self._turn(stop)
                except _REDIS_DOWN as error:
                    # Work or stand by again once Redis answers; the lease lapses meanwhile.
                    log.warning("sink %s: Redis unreachable, trying again: %s", self.consumer, error)
                    self.status.active = False
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.lease.interval)
        finally:
            self.status.active = False
            with contextlib.suppress(Exception):
                await self.lease.release()

    async def _turn(self, stop: asyncio.Event) -> None:
        """Works while this sink holds the lease, or stands by for one try's interval."""
        if await self.lease.acquire():
            log.info("sink %s holds the lease and works", self.consumer)
            self.status.active, self.status.lease_holder = True, self.consumer
            try:
                await self._while_held(stop)
            finally:
                self.status.active = False
            return
        holder = await self.lease.current()
        if holder != self.status.lease_holder:
            log.info("sink %s stands by: %s holds the lease", self.consumer, holder)
        self.status.lease_holder = holder
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.lease.interval)

    async def _while_held(self, stop: asyncio.Event) -> None:
        """Works until ``stop`` is set or the lease is lost (renewed meanwhile)."""
        held = asyncio.Event()  # set when this sink must stop working
        keeper = asyncio.create_task(self._keep_lease(stop, held), name="shortcore-sink-lease")
        try:
            await self._work(held)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_lease(self, stop: asyncio.Event, until: asyncio.Event) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.lease.interval)
                if stop.is_set():
                    return
                try:
                    if not await self.lease.renew():
                        log.warning("sink %s lost the lease: it stands by after this batch", self.consumer)
                        return
                except Exception as error:  # Redis unreachable: the work fails too, or the lease lapses
                    log.warning("cannot renew the sink lease: %s", error)
        finally:
            until.set()

    async def _work(self, stop: asyncio.Event) -> None:
        # Another sink may have moved the group since this one last worked.
        await self._load_cursor()
        self._claim_from, self._next_claim = "0-0", 0.0
        # Pending entries of our own first (a restart of a sink that read with XREADGROUP), then new ones.
        backlog_id = "0"
        flushing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                entries, pending, backlog_id = await self._next(stop, backlog_id)
                # The next batch is read while the previous one goes in; batches go in one at a
                # time, in order, because the sequence rules follow the stream.
                if flushing is not None:
                    await flushing
                    flushing = None
                if entries:
                    flushing = asyncio.create_task(self._flush(entries, stop, pending=pending))
                await self._refresh_backlog()
        finally:
            if flushing is not None:
                await flushing
            if self._stream is not None:
                self._stream.close()

    async def _load_cursor(self) -> None:
        """Where the group stands: new entries are read after its last-delivered id."""
        for info in await self.redis.xinfo_groups(STREAM_KEY):
            if _str(info.get("name")) == GROUP:
                self._cursor = _str(info["last-delivered-id"])
                read = info.get("entries-read")
                self._entries_read = int(read) if read is not None else (0 if self._cursor == "0-0" else None)

    async def _next(self, stop: asyncio.Event, backlog_id: str) -> tuple[Entries, bool, str]:
        """The next batch, and whether it is made of pending entries (acknowledged one by one)
        rather than new ones (acknowledged by moving the group's position)."""
        entries = await self._claim()
        if backlog_id != ">":
            own = await self._read(backlog_id, self.settings.batch_size, None)
            if own:
                entries += own
                backlog_id = _str(own[-1][0])
            else:
                backlog_id = ">"
        if entries:
            return entries, True, backlog_id
        return await self._gather(stop), False, backlog_id

    async def _read(self, from_id: str, count: int, block_ms: int | None, *, new: bool = False) -> list[Any]:
        """Entries of the stream: new ones after ``from_id`` (``XREAD``, which leaves no pending
        entry to acknowledge), or this consumer's pending ones (``XREADGROUP``)."""
        args: list[Any] = ["XREAD"] if new else ["XREADGROUP", "GROUP", GROUP, self.consumer]
        args += ["COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        # A reply is tens of thousands of fresh lists, freed by reference counting when the batch
        # is done: letting them set off the cyclic collector costs it a walk over every live
        # object, several times a batch (a fifth of the sink's time, measured).
        collecting = gc.isenabled()
        gc.disable()
        try:
            reply = await self._raw.execute_command(*args, "STREAMS", STREAM_KEY, from_id)
        finally:
            if collecting:
                gc.enable()
        if not reply:
            return []
        # RESP3 answers {stream: entries}, RESP2 [[stream, entries]].
        streams = reply.values() if isinstance(reply, dict) else [entries for _, entries in reply]
        out: list[Any] = []
        for entries in streams:
            out.extend(entries)
        return out

    async def _gather(self, stop: asyncio.Event) -> Entries:
        """A batch of new entries: waits up to a second for the first, then up to ``batch_wait``
        more for the batch to fill. Read raw into :class:`StreamEntries` on the sink's own
        connection, or through redis-py on a cluster (no single connection to reuse)."""
        entries: StreamEntries | list[Any]
        more: Callable[[bytes, int, int], Awaitable[int]]
        last: Callable[[], bytes]
        if self._stream is not None:
            reader, raw = self._stream, StreamEntries()

            async def more(after: bytes, count: int, block_ms: int) -> int:
                return await reader.read(raw, after, count, block_ms)

            entries, last = raw, lambda: raw.id(-1)
        else:
            listed: list[Any] = []

            async def more(after: bytes, count: int, block_ms: int) -> int:
                got = await self._read(_str(after), count, block_ms, new=True)
                listed.extend(got)
                return len(got)

            entries, last = listed, lambda: _bytes(listed[-1][0])

        size = self.settings.batch_size
        if not await more(self._cursor.encode(), size, 1000):
            return entries
        deadline = time.monotonic() + self.settings.batch_wait
        while len(entries) < size and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not await more(last(), size - len(entries), max(1, int(left * 1000))):
                break
        self._cursor = last().decode()
        return entries

    async def _advance(self, last_id: bytes, count: int) -> None:
        """Acknowledges a batch of new entries at once: the group's position moves to its last id."""
        if self._entries_read is not None:
            self._entries_read += count
        entries_read = "" if self._entries_read is None else str(self._entries_read)
        await self.redis.eval(_ADVANCE, 1, STREAM_KEY, GROUP, last_id, entries_read)

    async def _claim(self) -> list[tuple[Any, Any]]:
        """Pending entries of consumers idle for ``claim_idle`` seconds, now ours."""
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + max(self.settings.claim_idle / 4, 0.2)
        claimed: list[tuple[Any, Any]] = []
        while len(claimed) < self.settings.batch_size:
            reply = await self.redis.xautoclaim(
                STREAM_KEY,
                GROUP,
                self.consumer,
                min_idle_time=int(self.settings.claim_idle * 1000),
                start_id=self._claim_from,
                count=min(self.settings.batch_size - len(claimed), 10_000),
            )
            next_id, entries = _str(reply[0]), reply[1]
            claimed += [entry for entry in entries if entry is not None and entry[1] is not None]
            # Entries deleted from the stream while pending come back as ids alone: nothing to insert.
            deleted = reply[2] if len(reply) > 2 else []
            if deleted:
                await self.redis.xack(STREAM_KEY, GROUP, *deleted)
            self._claim_from = next_id
            if next_id == "0-0":
                break
        if claimed:
            log.info("took over %d pending events of stopped consumers", len(claimed))
        return claimed

    async def _flush(self, entries: Entries, stop: asyncio.Event, *, pending: bool) -> None:
        inserter = self.inserter

        def prepare(client: Client) -> PreparedBatch:
            return inserter.prepare(client, entries)

        batch: PreparedBatch | None = None
        delay = self.settings.retry_min
        while True:
            try:
                if batch is None:
                    batch = await self.analytics.run(prepare)
                refused = await self.analytics.run(inserter.insert_batch, batch)
                break
            except Exception as error:
                # Preparing reads ClickHouse too (campaigns' links, conversions' clicks): a server
                # out of reach fails it like an insert, and it is retried the same way (decoding
                # again from the entries, which sets no sequence rule's memory). Anything else
                # while preparing is a bug, not an outage.
                if batch is None and not is_connection_error(error):
                    raise
                self.status.failed()
                if self.status.clickhouse_up:
                    log.warning("ClickHouse refused a batch of %d events, retrying: %s", len(entries), error)
                self.status.clickhouse_up = False
                await self._refresh_backlog()
                if stop.is_set():
                    return  # not acknowledged: the next start (or another consumer) reads it again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.settings.retry_max)
        if not self.status.clickhouse_up:
            log.info("ClickHouse takes events again")
        self.status.clickhouse_up = True
        dead = batch.dead + refused
        if dead:
            await self._dead_letter(dead)
        if self.after_insert is not None:
            # Earlier events a sequence rule reclassified go too: their receivers saw the old class.
            await self.after_insert(batch.inserted(refused), batch.again(refused))
        if pending:
            ids = [entries[i][0] for i in range(len(entries))]
            for start in range(0, len(ids), 50_000):
                await self.redis.xack(STREAM_KEY, GROUP, *ids[start : start + 50_000])
        else:
            await self._advance(_bytes(entries[-1][0]), len(entries))
        self.status.count(len(batch) - len(refused), len(dead))
        self.status.last_insert_at = time.time()

    async def _dead_letter(self, dead: list[tuple[bytes, bytes, str]]) -> None:
        log.warning("%d malformed events to %s, e.g. %s", len(dead), DEAD_KEY, dead[0][2])
        pipe = self.redis.pipeline(transaction=False)
        now = str(int(time.time() * 1000))
        for stream_id, raw, reason in dead:
            fields: dict[Any, Any] = {"e": raw, "reason": reason, "id": stream_id, "at": now}
            pipe.xadd(DEAD_KEY, fields, maxlen=DEAD_MAXLEN, approximate=True)
        await pipe.execute()

    async def _refresh_backlog(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_backlog:
            return
        self._next_backlog = now + 1.0
        with contextlib.suppress(Exception):
            backlog = await stream_backlog(self.redis)
            self.status.backlog = backlog.events
            self.status.oldest_unsent_seconds = backlog.oldest_seconds
        await self._trim()

    async def _trim(self) -> None:
        """Drops entries every group has acknowledged, so the stream holds the backlog only."""
        with contextlib.suppress(Exception):
            groups = await self.redis.xinfo_groups(STREAM_KEY)
            floor: str | None = None
            for info in groups:
                candidate = _str(info["last-delivered-id"])
                if int(info.get("pending") or 0):
                    summary = await self.redis.xpending(STREAM_KEY, _str(info["name"]))
                    if summary.get("min"):
                        candidate = _str(summary["min"])
                else:
                    ms, _, seq = candidate.partition("-")
                    candidate = f"{ms}-{int(seq or 0) + 1}"
                if floor is None or _stream_id_key(candidate) < _stream_id_key(floor):
                    floor = candidate
            if floor is not None and floor != "0-1":
                await self.redis.xtrim(STREAM_KEY, minid=floor, approximate=False)

    def close(self) -> None:
        self.inserter.close()
        if self._stream is not None:
            self._stream.close()


#: What Redis being unreachable raises: redis-py's errors, and the raw reader's.
_REDIS_DOWN: Final = (RedisConnectionError, RedisTimeoutError, OSError, EOFError)

#: ``XGROUP SETID`` forward only (a second sink may be ahead), with the group's count of entries
#: read when known (it gives XINFO's ``lag``).
_ADVANCE: Final = """
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, group in ipairs(groups) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  if name == ARGV[1] then
    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
    local nms, nseq = string.match(ARGV[2], '^(%d+)-(%d+)$')
    lms, lseq, nms, nseq = tonumber(lms), tonumber(lseq), tonumber(nms), tonumber(nseq)
    if nms < lms or (nms == lms and nseq <= lseq) then
      return 0
    end
    if ARGV[3] == '' then
      redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2])
    else
      redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2], 'ENTRIESREAD', ARGV[3])
    end
    return 1
  end
end
return 0
"""


def _stream_id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _field(fields: Any) -> bytes | None:
    """The event bytes of an entry's fields, given as a flat list (raw replies) or a dict."""
    raw: Any = None
    if isinstance(fields, list):
        if len(fields) == 2 and fields[0] == EVENT_FIELD:
            raw = fields[1]
        else:
            pairs = dict(zip(fields[::2], fields[1::2], strict=False))
            raw = pairs.get(EVENT_FIELD, pairs.get(EVENT_FIELD.decode()))
    elif isinstance(fields, dict):
        raw = fields.get(EVENT_FIELD, fields.get(EVENT_FIELD.decode()))
    if raw is None:
        return None
    return raw if isinstance(raw, bytes) else str(raw).encode()


async def run_sink(
    settings: SinkSettings,
    redis: AnyRedis,
    analytics: AnalyticsStore,
    stop: asyncio.Event,
    status: SinkStatus | None = None,
    *,
    attribution: Attribution | None = None,
    after_insert: AfterInsert | None = None,
) -> SinkStatus:
    """The sink as a task of the process that owns the analytics store (``shortcore serve``'s
    control process): runs until ``stop`` is set and returns its status."""
    sink = EventSink(redis, analytics, settings, status=status, attribution=attribution, after_insert=after_insert)
    try:
        await sink.run(stop)
    finally:
        sink.close()
    return sink.status


def main() -> None:  # pragma: no cover - exercised by the fault test in a subprocess
    """``python -m shortcore.sink``: the sink alone, configured from ``SHORTCORE_*``."""
    import signal

    from shortcore.config import Settings
    from shortcore.store import connect

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if settings.redis_url is None:
        raise SystemExit("the sink needs SHORTCORE_REDIS_URL")

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        redis = connect(settings.redis_url or "")
        analytics = AnalyticsStore.open(settings.effective_clickhouse_url)
        try:
            await run_sink(SinkSettings.from_env(), redis, analytics, stop)
        finally:
            analytics.close()
            await redis.aclose()

    asyncio.run(go())


if __name__ == "__main__":  # pragma: no cover
    main()
