"""The analytics store: the ClickHouse connection and the versioned schema of database ``shortcore``.

One code path for both deployments: ``chdb:///path`` runs ClickHouse in this process (chDB; only
one process may open a data directory, so the process that owns it runs the sink and the control
API), and ``http(s)://user:pass@host:8123/db`` talks to a ClickHouse server or cluster.

Migrations are numbered and applied in order at start; the versions applied are recorded in
``shortcore.schema_migrations``, so a restart applies only what is new. A migration never edits an
earlier one: the schema of a deployment is the sum of the migrations it has applied.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

DATABASE: Final = "shortcore"
T = TypeVar("T")


class AnalyticsConfigError(ValueError):
    """An analytics store URL that shortcore cannot use."""


def connect(url: str, settings: dict[str, Any] | None = None) -> Client:
    """A clickhouse-connect client for ``chdb:///path`` or ``http(s)://…``, with session ``settings``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "chdb":
        path = url[len("chdb://") :]
        if not path.startswith("/"):
            raise AnalyticsConfigError("a chdb URL needs an absolute path: chdb:///var/lib/shortcore/clickhouse")
        return clickhouse_connect.get_client(dsn=f"chdb://{path}", settings=settings)
    if scheme in ("http", "https"):
        return clickhouse_connect.get_client(dsn=url, settings=settings)
    raise AnalyticsConfigError(f"the ClickHouse URL must start with chdb://, http:// or https://, got {scheme!r}")


def display_url(url: str) -> str:
    """The URL for messages and logs: the password of an ``http(s)://user:pass@…`` URL masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MESSAGES_BY_PHONE_SELECT: Final = (
    "account, SHA256(phone) AS phone_sha256, phone, campaign_id, recipient_index, coalesce(sent_at, created_at) AS sent"
)

# Ordering keys start with the campaign, so every per-campaign query reads one contiguous range;
# monthly partitions keep old data cheap to drop. ReplacingMergeTree collapses replays of the same
# event id or message row; reads that must be exact before merges use FINAL or count distinct ids.
# Events: ``class``/``reason`` are the final verdict, ``edge_class``/``edge_reason`` the edge's;
# the sink re-inserts an event with a higher ``revision`` when a sequence rule reclassifies it
# (the row with the highest revision wins), and the insert deduplication window drops a batch
# replayed whole. See docs/analytics.md.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "campaigns, messages, events",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {DATABASE}.campaigns (
                id String,
                account String,
                name String,
                text String,
                domain String,
                seq_start UInt64,
                recipients UInt32,
                links UInt16,
                destinations Array(String),
                utm Map(String, String),
                click_param Bool,
                sent_at Nullable(DateTime64(3, 'UTC')),
                expires_at Nullable(DateTime64(3, 'UTC')),
                created_at DateTime64(3, 'UTC'),
                version UInt64
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY (account, id)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {DATABASE}.messages (
                campaign_id String,
                account String,
                recipient_index UInt32,
                line UInt32,
                phone String,
                recipient_id String,
                fields Map(String, String),
                text String,
                encoding LowCardinality(String),
                characters UInt32,
                units UInt32,
                segments UInt16,
                segments_before UInt16,
                short_urls Array(String),
                sent_at Nullable(DateTime64(3, 'UTC')),
                created_at DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(created_at)
            ORDER BY (campaign_id, recipient_index)
            """,
            f"""
            CREATE TABLE IF NOT EXISTS {DATABASE}.events (
                event_id UUID,
                time DateTime64(3, 'UTC'),
                type LowCardinality(String),
                outcome LowCardinality(String),
                account String,
                campaign_id String,
                domain LowCardinality(String),
                token String,
                recipient_index Int64 DEFAULT -1,
                link_index Int32 DEFAULT -1,
                class LowCardinality(String),
                reason LowCardinality(String),
                edge_class LowCardinality(String),
                edge_reason LowCardinality(String),
                method LowCardinality(String),
                ip String,
                user_agent String,
                headers Map(String, String),
                browser LowCardinality(String),
                browser_version LowCardinality(String),
                os LowCardinality(String),
                os_version LowCardinality(String),
                device LowCardinality(String),
                country LowCardinality(String),
                click_id String,
                conversion_tag String,
                event_name LowCardinality(String),
                value Decimal(18, 4),
                currency LowCardinality(String),
                order_id String,
                page String,
                revision UInt8,
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
                INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
            ) ENGINE = ReplacingMergeTree(revision)
            PARTITION BY toYYYYMM(time)
            ORDER BY (campaign_id, time, event_id)
            SETTINGS non_replicated_deduplication_window = 1000
            """,
        ),
    ),
    # Attribution looks a customer up by phone (or the SHA-256 of it) within an account; messages
    # are ordered by campaign, so that was a scan of the account's messages. This copy, kept by a
    # materialized view on every insert into messages, is ordered by (account, SHA-256 of the
    # phone): a lookup reads one granule or two. Deletes of messages are repeated on it by hand.
    Migration(
        2,
        "messages by phone: the attribution lookup",
        (
            f"""
            CREATE TABLE IF NOT EXISTS {DATABASE}.messages_by_phone (
                account String,
                phone_sha256 FixedString(32),
                phone String,
                campaign_id String,
                recipient_index UInt32,
                sent DateTime64(3, 'UTC')
            ) ENGINE = ReplacingMergeTree
            ORDER BY (account, phone_sha256, campaign_id, recipient_index)
            """,
            f"""
            CREATE MATERIALIZED VIEW IF NOT EXISTS {DATABASE}.messages_by_phone_mv TO {DATABASE}.messages_by_phone
            AS SELECT {MESSAGES_BY_PHONE_SELECT} FROM {DATABASE}.messages
            """,
            # Messages stored before this migration; one inserted meanwhile is there twice, and
            # the table's engine collapses the two.
            f"INSERT INTO {DATABASE}.messages_by_phone SELECT {MESSAGES_BY_PHONE_SELECT} FROM {DATABASE}.messages",
        ),
    ),
    # A/B variants (shortcore.variants): each message's variant, and the campaign's variants as
    # JSON (names, weights, texts, destinations, the assignment seed). '' = a campaign of one text.
    Migration(
        3,
        "variants",
        (
            f"ALTER TABLE {DATABASE}.messages ADD COLUMN IF NOT EXISTS variant LowCardinality(String) DEFAULT ''",
            f"ALTER TABLE {DATABASE}.campaigns ADD COLUMN IF NOT EXISTS variants String DEFAULT ''",
        ),
    ),
    # Each event of a variant campaign's recipient carries the variant's name (the sink computes
    # it with the campaign's assigner), so figures per variant read the events alone instead of
    # joining every message of the campaign. Events stored before this have '' (stats join then).
    Migration(
        4,
        "events know their variant",
        (f"ALTER TABLE {DATABASE}.events ADD COLUMN IF NOT EXISTS variant LowCardinality(String) DEFAULT ''",),
    ),
)


def migrate(client: Client, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Applies the migrations this store has not seen, in order; returns the versions applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query(f"SELECT version FROM {DATABASE}.schema_migrations FINAL").result_rows}
    applied = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements:
            client.command(statement)
        # Recorded after its statements: a crash between them re-runs a migration whose
        # statements are all idempotent (IF NOT EXISTS), never skips one.
        client.insert(
            f"{DATABASE}.schema_migrations",
            [[migration.version, migration.name, dt.datetime.now(dt.UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        applied.append(migration.version)
    return applied


def schema_version(client: Client) -> int:
    rows = client.query(f"SELECT max(version) FROM {DATABASE}.schema_migrations").result_rows
    return int(rows[0][0]) if rows else 0


class AnalyticsStore:
    """The analytics client for async code: every call runs on one dedicated thread.

    chDB runs ClickHouse inside this process and its client is not meant for concurrent use, and
    a query must not block the event loop; one worker thread gives both. An HTTP client is used
    the same way, so the code does not care which store it has.
    """

    def __init__(self, client: Client, url: str | None = None) -> None:
        self.client = client
        #: The store's URL, for clients of its own (the read-only SQL console); None = unknown.
        path = getattr(client, "path", None) if type(client).__name__ == "ChdbClient" else None
        self.url = url or (f"chdb://{path}" if path else None)
        self._readonly: Client | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analytics")

    @classmethod
    def open(cls, url: str) -> AnalyticsStore:
        client = connect(url)
        migrate(client)
        return cls(client, url)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Runs ``work(client, *args)`` on the analytics thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(work, self.client, *args))

    async def run_readonly(self, work: Callable[..., T], *args: Any) -> T:
        """Runs ``work(readonly_client, *args)`` on the analytics thread, with a client whose
        session is read-only (see :func:`shortcore.stats.readonly_client`)."""
        from shortcore.stats import readonly_client

        def call(_: Client) -> T:
            if self._readonly is None:
                if self.url is None:
                    raise AnalyticsConfigError("the analytics store's URL is unknown: no read-only client")
                self._readonly = readonly_client(self.url)
            return work(self._readonly, *args)

        return await self.run(call)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._readonly is not None:
            self._readonly.close()
        self.client.close()
