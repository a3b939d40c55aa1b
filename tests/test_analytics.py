from __future__ import annotations

import datetime as dt
import uuid

import pytest
from clickhouse_connect.driver.client import Client

from shortcore.analytics import (
    DATABASE,
    MIGRATIONS,
    AnalyticsConfigError,
    Migration,
    connect,
    display_url,
    migrate,
    schema_version,
)


def test_migrations_apply_once(chdb_client: Client) -> None:
    migrate(chdb_client)  # whatever an earlier test left, the schema is now current
    assert migrate(chdb_client) == []
    assert schema_version(chdb_client) == MIGRATIONS[-1].version
    tables = {row[0] for row in chdb_client.query(f"SHOW TABLES FROM {DATABASE}").result_rows}
    assert {"campaigns", "messages", "events", "schema_migrations"} <= tables


def test_a_new_migration_is_applied_in_order(chdb_client: Client) -> None:
    migrate(chdb_client)
    extra = Migration(
        10_001, "test table", (f"CREATE TABLE IF NOT EXISTS {DATABASE}.test_extra (x UInt8) ENGINE = Memory",)
    )
    try:
        assert migrate(chdb_client, (*MIGRATIONS, extra)) == [10_001]
        assert migrate(chdb_client, (*MIGRATIONS, extra)) == []
        assert schema_version(chdb_client) == 10_001
    finally:
        chdb_client.command(f"DROP TABLE IF EXISTS {DATABASE}.test_extra")
        chdb_client.command(f"ALTER TABLE {DATABASE}.schema_migrations DELETE WHERE version = 10001")


def test_migration_4_gives_events_a_variant_and_runs_again_harmlessly(chdb_client: Client) -> None:
    migrate(chdb_client)
    (fourth,) = [m for m in MIGRATIONS if m.version == 4]
    campaign = f"variant-{uuid.uuid4()}"
    columns = ["event_id", "time", "type", "campaign_id", "recipient_index", "class"]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    chdb_client.insert(
        f"{DATABASE}.events", [[uuid.uuid4(), start, "click", campaign, 3, "human"]], column_names=columns
    )
    # Recorded after its statements: a crash in between runs them again, which must change nothing.
    for statement in fourth.statements:
        chdb_client.command(statement)
    found = chdb_client.query(
        "SELECT type, default_expression FROM system.columns "
        f"WHERE database = '{DATABASE}' AND table = 'events' AND name = 'variant'"
    ).result_rows
    assert found == [("LowCardinality(String)", "''")]
    # Events written without it (by a sink of before) read as having none.
    query = f"SELECT recipient_index, variant FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s"
    assert chdb_client.query(query, parameters={"c": campaign}).result_rows == [(3, "")]


def test_replayed_events_count_once(chdb_client: Client) -> None:
    migrate(chdb_client)
    campaign = f"replay-{uuid.uuid4()}"
    ids = [uuid.uuid4() for _ in range(100)]
    columns = ["event_id", "time", "type", "campaign_id", "class", "reason"]
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    rows = [[i, start + dt.timedelta(seconds=n), "request", campaign, "human", "human"] for n, i in enumerate(ids)]
    chdb_client.insert(f"{DATABASE}.events", rows, column_names=columns)
    chdb_client.insert(f"{DATABASE}.events", rows[:40], column_names=columns)  # a replayed batch
    query = f"SELECT count() FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s"
    assert chdb_client.query(query, parameters={"c": campaign}).result_rows == [(100,)]


@pytest.mark.parametrize("url", ["chdb://relative/path", "mysql://host/db", "", "clickhouse://x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(AnalyticsConfigError):
        connect(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://reader:p%40ss@ch.example:8443/shortcore", "https://reader:***@ch.example:8443/shortcore"),
        ("http://default:@127.0.0.1:8123/", "http://default:***@127.0.0.1:8123/"),
        ("http://ch.example:8123/", "http://ch.example:8123/"),
        ("chdb:///var/lib/shortcore/clickhouse", "chdb:///var/lib/shortcore/clickhouse"),
    ],
)
def test_display_url_masks_the_password(url: str, shown: str) -> None:
    assert display_url(url) == shown
