"""The event sink: the Redis stream ``sc:{events}`` into ClickHouse ``shortcore.events``, exactly once.

One consumer group (``sink``) reads the stream in batches (by size and by time), inserts each
batch, and only then acknowledges it. A consumer that dies leaves its batch pending; another one
(or its own restart) takes it over with ``XAUTOCLAIM`` once it has been idle long enough. So every
event is inserted at least once, and duplicates collapse:

* each batch is inserted with an ``insert_deduplication_token`` made of its first and last
  stream ids, so a batch replayed whole is dropped by ClickHouse itself;
* ``events`` is a ``ReplacingMergeTree`` ordered by ``(campaign_id, time, event_id)``, so a
  replay cut differently collapses at merge time, and every figure shown to a user reads
  ``FINAL`` (or counts distinct event ids), which is exact before merges.

Per event, Python does only what needs state or Python: it parses the JSON (a truncated or
ill-typed entry goes to the dead-letter stream ``sc:{events}:dead`` with the reason), applies the
sequence rules, attributes conversions to their click, and adds the user agent's versions. The
event bytes then go to ClickHouse as they are, plus a few ``_``-prefixed keys when something was
added, and one ``INSERT … SELECT`` maps them onto the table's columns in ClickHouse (privacy
options included). Should ClickHouse still refuse a batch, the batch is split in halves until the
refused entries are found; they are dead-lettered and the rest goes in.

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
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge

from shortcore.analytics import DATABASE, AnalyticsStore
from shortcore.backlog import GROUP as GROUP
from shortcore.backlog import STREAM_KEY as STREAM_KEY
from shortcore.backlog import stream_backlog as stream_backlog
from shortcore.classify import parse_user_agent
from shortcore.conversions import Attribution
from shortcore.store import AnyRedis

log = logging.getLogger(__name__)

# Must match shortcore.events (the edge's writer).
EVENT_FIELD: Final = b"e"
EVENT_VERSION: Final = 1

DEAD_KEY: Final = "sc:{events}:dead"
DEAD_MAXLEN: Final = 100_000

CLASSES: Final = frozenset({"human", "preview", "bot"})
TYPES: Final = frozenset({"click", "conversion"})
SIBLING_BURST: Final = "bot:sibling-burst"
SWEEP: Final = "bot:sweep"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_COUNTRY = re.compile(r"[A-Z]{2}")


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class SinkSettings:
    """The sink's tunables, from ``SHORTCORE_SINK_*`` and a few ``SHORTCORE_*`` privacy and
    enrichment variables (see :meth:`from_env`)."""

    #: Events per insert at most, and seconds the first event of a batch may wait for more.
    batch_size: int = 20_000
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
# From the edge's JSON to the table's columns

#: The edge's event JSON as ClickHouse reads it; keys starting with ``_`` are added by the sink.
#: Must match the fields ``shortcore.edge`` writes (see DESIGN.md, "Hot path and event flow").
INPUT_STRUCTURE: Final = ", ".join(
    (
        "event_id String, time Int64, type String, outcome Nullable(String), account Nullable(String), "
        "campaign_id Nullable(String), domain Nullable(String), token Nullable(String), "
        "recipient_index Nullable(Int64), link_index Nullable(Int32), class String, reason Nullable(String), "
        "method Nullable(String), ip Nullable(String), user_agent Nullable(String), "
        "headers Map(String, String), browser Nullable(String), browser_version Nullable(String), "
        "os Nullable(String), os_version Nullable(String), device Nullable(String), country Nullable(String), "
        "click_id Nullable(String), conversion_tag Nullable(String), event_name Nullable(String), "
        "value Nullable(Float64), currency Nullable(String), order_id Nullable(String), page Nullable(String)",
        "_class Nullable(String), _reason Nullable(String), _revision Nullable(UInt8), "
        "_browser_version Nullable(String), _os_version Nullable(String), _country Nullable(String), "
        "_account Nullable(String), _campaign_id Nullable(String), _recipient_index Nullable(Int64), "
        "_link_index Nullable(Int32)",
    )
)

#: JSON read strictly: a number where a string belongs (or any other mix-up) is an error, which
#: sends the entry to the dead-letter stream instead of storing something else.
INPUT_SETTINGS: Final = {
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_numbers_as_strings": 0,
    "input_format_json_read_bools_as_numbers": 0,
    "input_format_json_read_bools_as_strings": 0,
    "input_format_json_read_objects_as_strings": 0,
    "input_format_json_read_arrays_as_strings": 0,
    "input_format_json_try_infer_numbers_from_strings": 0,
    "input_format_parallel_parsing": 0,
}

EVENT_COLUMNS: Final = (
    "event_id", "time", "type", "outcome", "account", "campaign_id", "domain", "token", "recipient_index",
    "link_index", "class", "reason", "edge_class", "edge_reason", "method", "ip", "user_agent", "headers",
    "browser", "browser_version", "os", "os_version", "device", "country", "click_id", "conversion_tag",
    "event_name", "value", "currency", "order_id", "page", "revision",
)  # fmt: skip


def select_expressions(settings: SinkSettings) -> str:
    """The ``SELECT`` list that maps :data:`INPUT_STRUCTURE` onto :data:`EVENT_COLUMNS`."""
    ip = "coalesce(ip, '')"
    if settings.truncate_ip:
        ip = (
            f"multiIf(isIPv4String({ip}), IPv4NumToString(tupleElement(IPv4CIDRToRange(toIPv4({ip}), 24), 1)), "
            f"isIPv6String({ip}), IPv6NumToString(tupleElement(IPv6CIDRToRange(toIPv6({ip}), 48), 1)), '')"
        )
    user_agent = "coalesce(user_agent, '')" if settings.store_user_agent else "''"
    return ", ".join(
        (
            "toUUID(event_id)",
            "fromUnixTimestamp64Milli(time, 'UTC')",
            "type",
            "coalesce(outcome, '')",
            "coalesce(_account, account, '')",
            "coalesce(_campaign_id, campaign_id, '')",
            "coalesce(domain, '')",
            "coalesce(token, '')",
            "coalesce(_recipient_index, recipient_index, -1)",
            "coalesce(_link_index, link_index, -1)",
            "coalesce(_class, class)",
            "coalesce(_reason, reason, '')",
            "class",
            "coalesce(reason, '')",
            "coalesce(method, '')",
            ip,
            user_agent,
            "headers",
            "coalesce(browser, '')",
            "coalesce(browser_version, _browser_version, '')",
            "coalesce(os, '')",
            "coalesce(os_version, _os_version, '')",
            "coalesce(device, '')",
            "coalesce(country, _country, '')",
            "coalesce(click_id, '')",
            "coalesce(conversion_tag, '')",
            "coalesce(event_name, '')",
            "toDecimal64(coalesce(value, 0), 4)",
            "coalesce(currency, '')",
            "coalesce(order_id, '')",
            "coalesce(page, '')",
            "coalesce(_revision, 0)",
        )
    )


class EventRejected(ValueError):
    """An entry that cannot become an event; the message is the dead-letter reason."""


def check_event(raw: bytes) -> dict[str, Any]:
    """The event in ``raw``, checked for what the sink itself relies on. The types of the other
    fields are checked by ClickHouse when the batch goes in."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise EventRejected(f"not JSON: {error}") from None
    if type(event) is not dict:
        raise EventRejected("not a JSON object")
    if event.get("v") != EVENT_VERSION:
        raise EventRejected(f"unsupported event version {event.get('v')!r}")
    event_id = event.get("event_id")
    if type(event_id) is not str or not _UUID.fullmatch(event_id):
        raise EventRejected("event_id must be a UUID string")
    if type(event.get("time")) is not int:
        raise EventRejected("time must be an integer (Unix milliseconds)")
    if event.get("type") not in TYPES:
        raise EventRejected(f"type must be one of {sorted(TYPES)}")
    if event.get("class") not in CLASSES:
        raise EventRejected(f"class must be one of {sorted(CLASSES)}")
    for name in ("campaign_id", "ip", "user_agent", "click_id"):
        value = event.get(name)
        if value is not None and type(value) is not str:
            raise EventRejected(f"{name} must be a string")
    for name in ("recipient_index", "link_index"):
        value = event.get(name)
        if value is not None and type(value) is not int:
            raise EventRejected(f"{name} must be an integer")
    return event


@dataclass(slots=True)
class Row:
    """One event on its way in: the bytes from the stream and what the sink adds to them."""

    stream_id: bytes
    raw: bytes
    event: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> bytes:
        if not self.extra:
            return self.raw
        body = self.raw.rstrip()
        return body[:-1] + b"," + orjson.dumps(self.extra)[1:]


# ---------------------------------------------------------------------------------------------
# Sequence rules


class SequenceRules:
    """``bot:sibling-burst`` and ``bot:sweep``: patterns over several requests that the edge,
    seeing one request at a time, cannot judge. Applied to human events on known tokens; the
    clock is the events' own time, so a replay judges the same way. A rule that fires on events
    already inserted re-emits them with a higher revision, which replaces them."""

    def __init__(self, settings: SinkSettings) -> None:
        self.sibling_ms = int(settings.sibling_window * 1000)
        self.sweep_ms = int(settings.sweep_window * 1000)
        self.sweep_recipients = settings.sweep_recipients
        self._messages: dict[tuple[str, int], list[Row]] = {}
        self._clients: dict[tuple[str, str], list[Row]] = {}
        self._newest = 0
        self._pruned = 0

    def apply(self, rows: Sequence[Row], links_of: Callable[[str], int]) -> list[Row]:
        """Marks the rows the rules catch; returns earlier rows that must be emitted again."""
        again: dict[int, Row] = {}
        batch = {id(row) for row in rows}
        for row in rows:
            event = row.event
            campaign = event.get("campaign_id")
            if event["class"] != "human" or not campaign or event["type"] != "click":
                continue
            now = event["time"]
            self._newest = max(self._newest, now)
            recipient = event.get("recipient_index", -1)
            links = links_of(campaign)
            if links >= 2 and recipient is not None and recipient >= 0:
                hits = self._recent(self._messages, (campaign, recipient), now - self.sibling_ms)
                hits.append(row)
                if len({hit.event.get("link_index") for hit in hits}) >= links:
                    self._mark(hits, SIBLING_BURST, batch, again)
            if self.sweep_recipients > 0:
                client = (event.get("ip") or "", event.get("user_agent") or "")
                if client[0]:
                    seen = self._recent(self._clients, client, now - self.sweep_ms)
                    seen.append(row)
                    recipients = {(hit.event["campaign_id"], hit.event.get("recipient_index")) for hit in seen}
                    if len(recipients) >= self.sweep_recipients:
                        self._mark(seen, SWEEP, batch, again)
        if self._newest - self._pruned > 10_000:
            self._prune()
        return list(again.values())

    @staticmethod
    def _recent(table: dict[Any, list[Row]], key: Any, since: int) -> list[Row]:
        hits = table.get(key)
        if hits is None:
            hits = table[key] = []
        elif hits and hits[0].event["time"] < since:
            hits[:] = [hit for hit in hits if hit.event["time"] >= since]
        return hits

    @staticmethod
    def _mark(hits: list[Row], reason: str, batch: set[int], again: dict[int, Row]) -> None:
        for hit in hits:
            if hit.extra.get("_reason") == reason:
                continue
            hit.extra.update(_class="bot", _reason=reason, _revision=1)
            if id(hit) not in batch:
                again[id(hit)] = hit

    def _prune(self) -> None:
        """Forgets what no rule can use any more, so memory follows the traffic of a few seconds."""
        horizon = self._newest - max(self.sibling_ms, self.sweep_ms)
        tables: tuple[dict[Any, list[Row]], ...] = (self._messages, self._clients)
        for table in tables:
            stale = [key for key, hits in table.items() if not hits or hits[-1].event["time"] < horizon]
            for key in stale:
                del table[key]
        self._pruned = self._newest


# ---------------------------------------------------------------------------------------------
# Enrichment


class Enricher:
    """Adds what the edge did not: browser and OS versions (from the Rust user-agent parser),
    the country (a trusted header, or a MaxMind database), and for conversions the campaign,
    recipient and link of the click they follow."""

    def __init__(self, settings: SinkSettings) -> None:
        self.country_header = settings.country_header.lower() if settings.country_header else None
        self._versions: dict[str, dict[str, str]] = {}
        self._geo: Any = None
        if settings.geoip_db is not None:
            try:
                import maxminddb  # type: ignore[import-not-found, unused-ignore]
            except ImportError as error:
                raise ValueError("SHORTCORE_GEOIP_DB needs the maxminddb package (pip install maxminddb)") from error
            self._geo = maxminddb.open_database(str(settings.geoip_db))
        self._countries: dict[str, str] = {}

    def enrich(self, row: Row) -> None:
        event = row.event
        if "browser_version" not in event:
            ua = event.get("user_agent") or ""
            versions = self._versions.get(ua)
            if versions is None:
                if len(self._versions) > 50_000:
                    self._versions.clear()
                parsed = parse_user_agent(ua)
                versions = {}
                if parsed.browser_version:
                    versions["_browser_version"] = parsed.browser_version
                if parsed.os_version:
                    versions["_os_version"] = parsed.os_version
                self._versions[ua] = versions
            if versions:
                row.extra.update(versions)
        if "country" not in event:
            country = self._country(event)
            if country:
                row.extra["_country"] = country

    def _country(self, event: dict[str, Any]) -> str:
        if self.country_header is not None:
            headers = event.get("headers")
            value = headers.get(self.country_header) if type(headers) is dict else None
            if type(value) is str and _COUNTRY.fullmatch(value.strip().upper()) and value.strip().upper() != "XX":
                return value.strip().upper()
        ip = event.get("ip")
        if self._geo is None or not ip or type(ip) is not str:
            return ""
        country = self._countries.get(ip)
        if country is None:
            if len(self._countries) > 100_000:
                self._countries.clear()
            try:
                record = self._geo.get(ip)
            except ValueError:
                record = None
            country = ""
            if isinstance(record, dict):
                found = record.get("country") or record.get("registered_country") or {}
                country = str(found.get("iso_code", "")) if isinstance(found, dict) else ""
            self._countries[ip] = country
        return country

    def close(self) -> None:
        if self._geo is not None:
            self._geo.close()


def attribute_conversions(client: Client | None, rows: Sequence[Row]) -> None:
    """Gives each conversion the account, campaign, recipient and link of its click (the click id
    is the click's event id): from the same batch when it is there, else from ClickHouse."""
    conversions = [row for row in rows if row.event["type"] == "conversion" and row.event.get("click_id")]
    if not conversions:
        return
    clicks = {
        row.event["event_id"]: row.event
        for row in rows
        if row.event["type"] == "click" and row.event.get("campaign_id")
    }
    missing = {
        str(row.event["click_id"])
        for row in conversions
        if row.event["click_id"] not in clicks and _UUID.fullmatch(str(row.event["click_id"]))
    }
    if missing and client is not None:
        found = client.query(
            f"SELECT toString(event_id), account, campaign_id, recipient_index, link_index FROM {DATABASE}.events "
            "WHERE event_id IN %(ids)s AND type = 'click' AND campaign_id != '' LIMIT 1 BY event_id",
            parameters={"ids": sorted(missing)},
        ).result_rows
        for event_id, account, campaign, recipient, link in found:
            clicks[event_id] = {
                "account": account, "campaign_id": campaign, "recipient_index": recipient, "link_index": link,
            }  # fmt: skip
    for row in conversions:
        click = clicks.get(row.event["click_id"])
        if click is not None and not row.event.get("campaign_id"):
            row.extra.update(
                _account=click.get("account") or "",
                _campaign_id=click["campaign_id"],
                _recipient_index=click.get("recipient_index", -1),
                _link_index=click.get("link_index", -1),
            )


# ---------------------------------------------------------------------------------------------
# Inserting


def is_connection_error(error: BaseException) -> bool:
    """Whether an insert failed because ClickHouse is unreachable (retry later) rather than
    because of the data (find the bad entries)."""
    from clickhouse_connect.driver.exceptions import OperationalError

    return isinstance(error, OperationalError | OSError | TimeoutError)


class EventInserter:
    """Turns a batch of stream entries into rows of ``events``; runs on the analytics thread."""

    def __init__(self, settings: SinkSettings, attribution: Attribution | None = None) -> None:
        self.settings = settings
        self.attribution = attribution or Attribution()
        self.rules = SequenceRules(settings)
        self.enricher = Enricher(settings)
        self.select = select_expressions(settings)
        self._links: dict[str, int] = {}

    def prepare(self, client: Client | None, entries: Iterable[tuple[bytes, bytes | None]]) -> PreparedBatch:
        """Checks, enriches and judges a batch. Entries are ``(stream id, event bytes)``."""
        # Tens of thousands of fresh, acyclic objects would set off collections that walk every
        # live object; reference counting frees them all the same.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._prepare(client, entries)
        finally:
            if collecting:
                gc.enable()

    def _prepare(self, client: Client | None, entries: Iterable[tuple[bytes, bytes | None]]) -> PreparedBatch:
        rows: list[Row] = []
        dead: list[tuple[bytes, bytes, str]] = []
        for stream_id, raw in entries:
            if raw is None:
                dead.append((stream_id, b"", f"no '{EVENT_FIELD.decode()}' field"))
                continue
            try:
                event = check_event(raw)
            except EventRejected as error:
                dead.append((stream_id, raw, str(error)))
                continue
            rows.append(Row(stream_id, raw, event))
        enrich = self.enricher.enrich
        for row in rows:
            enrich(row)
        self.attribution.attribute(client, rows)
        campaigns = {row.event["campaign_id"] for row in rows if row.event.get("campaign_id")}
        unknown = [c for c in campaigns if c not in self._links]
        if unknown and client is not None:
            self._load_links(client, unknown)
        again = self.rules.apply(rows, lambda c: self._links.get(c, 0))
        return PreparedBatch(rows, again, dead)

    def _load_links(self, client: Client, campaigns: list[str]) -> None:
        if len(self._links) > 100_000:
            self._links.clear()
        found = client.query(
            f"SELECT id, links FROM {DATABASE}.campaigns FINAL WHERE id IN %(ids)s", parameters={"ids": campaigns}
        ).result_rows
        for campaign, links in found:
            self._links[campaign] = int(links)
        # A campaign not (yet) in the table: no sibling rule until it is.
        for campaign in campaigns:
            if campaign not in self._links:
                self._links[campaign] = 0 if len(found) == len(campaigns) else -1
        for campaign in [c for c, n in self._links.items() if n == -1]:
            del self._links[campaign]

    def insert(self, client: Client, lines: Sequence[bytes], token: str) -> None:
        """One ``INSERT … SELECT`` of JSON lines; raises what ClickHouse raises."""
        if not lines:
            return
        body = b"\n".join(lines) + b"\n"
        sql = f"INSERT INTO {DATABASE}.events ({', '.join(EVENT_COLUMNS)}) SELECT {self.select} FROM "
        settings = {**INPUT_SETTINGS, "insert_deduplication_token": token}
        if getattr(client, "path", None) is not None and type(client).__name__ == "ChdbClient":
            # In-process ClickHouse reads the lines from a file; the HTTP protocol sends them as the body.
            fd, path = tempfile.mkstemp(prefix="shortcore-events-", suffix=".jsonl")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                client.command(sql + f"file('{path}', 'JSONEachRow', '{INPUT_STRUCTURE}')", settings=settings)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        else:
            client.command(sql + f"input('{INPUT_STRUCTURE}') FORMAT JSONEachRow", data=body, settings=settings)

    def insert_batch(self, client: Client, batch: PreparedBatch) -> list[tuple[bytes, bytes, str]]:
        """Inserts a prepared batch; returns the entries ClickHouse refused (with its reason).
        Raises when ClickHouse is unreachable: nothing of the batch may be acknowledged then."""
        rows = batch.rows + batch.again
        lines = [row.line() for row in rows]
        refused: list[tuple[bytes, bytes, str]] = []
        self._insert_or_split(client, rows, lines, refused)
        return refused

    def _insert_or_split(
        self, client: Client, rows: list[Row], lines: list[bytes], refused: list[tuple[bytes, bytes, str]]
    ) -> None:
        if not rows:
            return
        # Same entries, same token: a batch replayed whole is dropped by ClickHouse. Reclassified
        # rows (a higher revision) make a different token, so they are never dropped.
        revisions = sum(row.extra.get("_revision", 0) for row in rows)
        token = f"{rows[0].stream_id.decode()}/{rows[-1].stream_id.decode()}/{len(rows)}/{revisions}"
        try:
            self.insert(client, lines, token)
            return
        except Exception as error:
            if is_connection_error(error) or not _answers(client):
                raise
            if len(rows) == 1:
                refused.append((rows[0].stream_id, rows[0].raw, _reason(error)))
                return
        half = len(rows) // 2
        self._insert_or_split(client, rows[:half], lines[:half], refused)
        self._insert_or_split(client, rows[half:], lines[half:], refused)

    def close(self) -> None:
        self.enricher.close()


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


#: What the sink hands each inserted batch to (the webhook outbox).
AfterInsert = Callable[[list[Row]], Awaitable[None]]


@dataclass(slots=True)
class PreparedBatch:
    rows: list[Row]
    again: list[Row]
    dead: list[tuple[bytes, bytes, str]]


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
        self.analytics = analytics
        self.settings = settings or SinkSettings()
        self.consumer = self.settings.consumer or default_consumer()
        self.status = status or SinkStatus()
        self.inserter = EventInserter(self.settings, attribution)
        self._claim_from = "0-0"
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
        """Until ``stop`` is set: read, insert, acknowledge. A batch in flight when ``stop`` is set
        is finished if ClickHouse takes it, else left pending for the next start."""
        await self.ensure_group()
        # Our own pending entries first (a restart with the same consumer name), then new ones.
        backlog_id = "0"
        flushing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                entries, backlog_id = await self._next(stop, backlog_id)
                # The next batch is read while the previous one goes in; batches go in one at a
                # time, in order, because the sequence rules follow the stream.
                if flushing is not None:
                    await flushing
                    flushing = None
                if entries:
                    flushing = asyncio.create_task(self._flush(entries, stop))
                await self._refresh_backlog()
        finally:
            if flushing is not None:
                await flushing

    async def _next(self, stop: asyncio.Event, backlog_id: str) -> tuple[list[tuple[Any, Any]], str]:
        entries = await self._claim()
        if backlog_id != ">":
            own = await self._read(backlog_id, self.settings.batch_size, None)
            if own:
                entries += own
                backlog_id = _str(own[-1][0])
            else:
                backlog_id = ">"
        if not entries:
            entries = await self._gather(stop)
        return entries, backlog_id

    async def _read(self, from_id: str, count: int, block_ms: int | None) -> list[tuple[Any, Any]]:
        args: list[Any] = ["XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", count]
        if block_ms is not None:
            args += ["BLOCK", block_ms]
        reply = await self._raw.execute_command(*args, "STREAMS", STREAM_KEY, from_id)
        if not reply:
            return []
        # RESP3 answers {stream: entries}, RESP2 [[stream, entries]].
        streams = reply.values() if isinstance(reply, dict) else [entries for _, entries in reply]
        out: list[tuple[Any, Any]] = []
        for entries in streams:
            out.extend(entries)
        return out

    async def _gather(self, stop: asyncio.Event) -> list[tuple[Any, Any]]:
        """A batch of new entries: waits up to a second for the first, then up to ``batch_wait``
        more for the batch to fill."""
        size = self.settings.batch_size
        entries = await self._read(">", size, 1000)
        if not entries:
            return entries
        deadline = time.monotonic() + self.settings.batch_wait
        while len(entries) < size and not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await self._read(">", size - len(entries), max(1, int(left * 1000)))
            if not more:
                break
            entries += more
        return entries

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

    async def _flush(self, entries: list[tuple[Any, Any]], stop: asyncio.Event) -> None:
        pairs = [(_bytes(stream_id), _field(fields)) for stream_id, fields in entries]
        inserter = self.inserter

        def prepare(client: Client) -> PreparedBatch:
            return inserter.prepare(client, pairs)

        batch = await self.analytics.run(prepare)
        delay = self.settings.retry_min
        while True:
            try:
                refused = await self.analytics.run(inserter.insert_batch, batch)
                break
            except Exception as error:
                self.status.failed()
                if self.status.clickhouse_up:
                    log.warning("ClickHouse refused a batch of %d events, retrying: %s", len(batch.rows), error)
                self.status.clickhouse_up = False
                await self._refresh_backlog()
                if stop.is_set():
                    return  # left pending: the next start (or another consumer) takes it over
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
            refused_ids = {stream_id for stream_id, _, _ in refused}
            await self.after_insert([row for row in batch.rows if row.stream_id not in refused_ids])
        ids = [stream_id for stream_id, _ in pairs]
        for start in range(0, len(ids), 50_000):
            await self.redis.xack(STREAM_KEY, GROUP, *ids[start : start + 50_000])
        self.status.count(len(batch.rows) - len(refused), len(dead))
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
