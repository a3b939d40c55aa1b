"""The sink against a real Redis and the session's chDB: exactly once, dead letters, sequence rules,
enrichment, privacy, outages, takeover of a dead consumer's events, and a SIGKILL in the middle."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from shortcore import sink as sink_module
from shortcore.analytics import DATABASE, AnalyticsStore, migrate
from shortcore.clickids import ClickIds
from shortcore.conversions import Attribution, conversion_tag
from shortcore.sink import (
    DEAD_KEY,
    GROUP,
    STREAM_KEY,
    AfterInsert,
    EventInserter,
    EventSink,
    Row,
    SinkSettings,
    SinkStatus,
    stream_backlog,
)
from shortcore.sinklease import LEASE_KEY, SinkLease
from shortcore.store import AnyRedis, EmbeddedStore, connect
from shortcore.variants import VariantAssigner, new_seed
from shortcore.webhooks import payload

from chhttp import Gateway
from sinkdata import ANDROID, IPHONE, bulk, click, conversion, encode, fresh_stream, write_events


@pytest.fixture
def analytics(chdb_client: Client) -> Iterator[AnalyticsStore]:
    migrate(chdb_client)
    store = AnalyticsStore(chdb_client)
    yield store
    store._executor.shutdown(wait=True)  # the session owns the client


async def _drain(
    redis: AnyRedis,
    analytics: AnalyticsStore,
    settings: SinkSettings,
    timeout: float = 30,
    attribution: Attribution | None = None,
    after_insert: AfterInsert | None = None,
) -> SinkStatus:
    """Runs a sink until the stream's backlog is empty."""
    sink = EventSink(redis, analytics, settings, attribution=attribution, after_insert=after_insert)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if task.done():
                task.result()
            if (await stream_backlog(redis)).events == 0:
                break
        else:
            raise AssertionError("the sink did not drain the stream in time")
    finally:
        stop.set()
        await task
        sink.close()
    return sink.status


def _campaign_id() -> str:
    return "cmp_" + uuid.uuid4().hex[:16]


def _add_campaign(client: Client, campaign: str, links: int, variants: str = "") -> None:
    now = dt.datetime.now(dt.UTC)
    client.insert(
        f"{DATABASE}.campaigns",
        [[campaign, "acc_test", "test", "text", "ul.example", 0, 10, links,
          [f"https://x.example/{i}" for i in range(links)], {}, False, None, None, now, 1, variants]],
        column_names=["id", "account", "name", "text", "domain", "seq_start", "recipients", "links", "destinations",
                      "utm", "click_param", "sent_at", "expires_at", "created_at", "version", "variants"],
    )  # fmt: skip


def _rows(client: Client, campaign: str) -> list[dict[str, Any]]:
    return list(
        client.query(
            f"SELECT * FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s ORDER BY time, event_id",
            parameters={"c": campaign},
        ).named_results()
    )


def test_events_arrive_once_enriched(redis_url: str, analytics: AnalyticsStore, chdb_client: Client) -> None:
    campaign = _campaign_id()
    events = [
        click(
            campaign,
            i,
            0,
            ip=f"198.51.100.{i}",
            ua=IPHONE if i % 2 else ANDROID,
            headers={"accept-language": "en-GB", "cf-ipcountry": "de"},
        )
        for i in range(1000)
    ]

    async def go() -> SinkStatus:
        redis = await fresh_stream(redis_url)
        await write_events(redis, events)
        status = await _drain(redis, analytics, SinkSettings(batch_size=300, country_header="CF-IPCountry"))
        assert await redis.xlen(STREAM_KEY) == 0  # acknowledged entries are trimmed
        await redis.aclose()
        return status

    status = asyncio.run(go())
    assert status.inserted == 1000 and status.dead_lettered == 0
    rows = _rows(chdb_client, campaign)
    assert len(rows) == 1000
    assert {str(r["event_id"]) for r in rows} == {e["event_id"] for e in events}
    first = next(r for r in rows if r["recipient_index"] == 1)
    assert (first["browser"], first["browser_version"], first["os"], first["os_version"]) == (
        "Safari",
        "17",
        "iOS",
        "17",
    )
    assert first["country"] == "DE" and first["ip"] == "198.51.100.1" and first["user_agent"] == IPHONE
    assert first["class"] == first["edge_class"] == "human" and first["revision"] == 0
    assert first["headers"]["accept-language"] == "en-GB"


def test_a_batch_is_acknowledged_by_the_groups_position(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    campaign = _campaign_id()
    events = [click(campaign, i) for i in range(50)]

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, events)
        last = (await redis.xrevrange(STREAM_KEY, count=1))[0][0]
        await _drain(redis, analytics, SinkSettings(batch_size=20, batch_wait=0.01))
        (group,) = await redis.xinfo_groups(STREAM_KEY)
        # No pending entry was made per event, and the group knows how far it got.
        assert (group["pending"], group["lag"], group["last-delivered-id"]) == (0, 0, last)
        assert group["entries-read"] == 50
        # A restart reads nothing again.
        again = EventSink(redis, analytics, SinkSettings(batch_wait=0.01))
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await task
        assert again.status.inserted == 0
        # The position only moves forward: a sink behind another one cannot move it back.
        await again._advance(b"1-0", 1)
        assert (await redis.xinfo_groups(STREAM_KEY))[0]["last-delivered-id"] == last
        await redis.aclose()

    asyncio.run(go())
    assert len(_rows(chdb_client, campaign)) == 50


def test_escaped_and_unicode_fields_are_stored_as_written(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    campaign = _campaign_id()
    ua = 'Mozilla/5.0 "quoted" \\ back\tslash é 😀'
    event = click(campaign, 0, ua=ua, headers={"accept-language": 'fr-CH, fr;q=0.9 "x"', "x-é": "ü"})

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, [event, {**click(campaign, 1), "value": None, "page": None}])
        await _drain(redis, analytics, SinkSettings())
        await redis.aclose()

    asyncio.run(go())
    rows = {r["recipient_index"]: r for r in _rows(chdb_client, campaign)}
    assert rows[0]["user_agent"] == ua
    assert rows[0]["headers"] == event["headers"]
    assert (rows[1]["value"], rows[1]["page"]) == (0, "")


def test_inserted_rows_are_handed_on_with_what_the_sink_added(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    campaign = _campaign_id()
    sweep = [click(campaign, r, 0, ip="198.51.100.42", ua=ANDROID) for r in range(5)]
    seen: list[tuple[str, dict[str, Any]]] = []

    async def handed(rows: Sequence[Row], again: Sequence[Row]) -> None:
        seen.extend((row.event["event_id"], row.extra) for row in rows)

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, [*sweep, {**click(campaign, 9), "time": "late"}])
        sink = EventSink(redis, analytics, SinkSettings(batch_wait=0.01), after_insert=handed)
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        deadline = time.monotonic() + 30
        while sink.status.inserted < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task
        await redis.aclose()

    asyncio.run(go())
    assert [event_id for event_id, _ in seen] == [e["event_id"] for e in sweep]
    for _, extra in seen:
        assert (extra["_class"], extra["_reason"], extra["_revision"]) == ("bot", "bot:sweep", 1)
        assert extra["_browser_version"] == "124" and extra["_os_version"] == "14"


def test_a_replayed_batch_counts_once(analytics: AnalyticsStore, chdb_client: Client) -> None:
    campaign = _campaign_id()
    entries = [(f"{1000 + i}-0".encode(), encode(click(campaign, i))) for i in range(500)]
    inserter = EventInserter(SinkSettings())
    # No background merge may collapse rows while the raw count is read.
    chdb_client.command(f"SYSTEM STOP MERGES {DATABASE}.events")
    try:
        batch = inserter.prepare(chdb_client, entries)
        assert inserter.insert_batch(chdb_client, batch) == []
        assert inserter.insert_batch(chdb_client, batch) == []  # same token: ClickHouse drops it
        # Cut differently (a takeover reads other boundaries): the table collapses it.
        again = inserter.prepare(chdb_client, entries[100:300])
        assert inserter.insert_batch(chdb_client, again) == []
        count, distinct, raw = chdb_client.query(
            f"SELECT count(), uniqExact(event_id), (SELECT count() FROM {DATABASE}.events WHERE campaign_id = %(c)s) "
            f"FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s",
            parameters={"c": campaign},
        ).result_rows[0]
    finally:
        chdb_client.command(f"SYSTEM START MERGES {DATABASE}.events")
    assert (count, distinct) == (500, 500)
    assert raw == 700  # before merges: the whole replay was dropped, the partial one waits for a merge


def test_malformed_entries_go_to_the_dead_letter_stream(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    campaign = _campaign_id()
    good = [click(campaign, i) for i in range(20)]
    truncated = encode(click(campaign, 99))[:40]
    bad_types = [
        {**click(campaign, 100), "recipient_index": "seven"},  # caught by the sink
        {**click(campaign, 101), "browser": 12},  # caught by ClickHouse's strict reading
        {**click(campaign, 102), "headers": {"accept": ["a", "b"]}},
        {**click(campaign, 103), "v": 99},
        {**click(campaign, 104), "event_id": "not-a-uuid"},
    ]

    async def go() -> list[Any]:
        redis = await fresh_stream(redis_url)
        await write_events(redis, [*good[:10], truncated, *bad_types, *good[10:]])
        await redis.xadd(STREAM_KEY, {"x": b"no event field"})
        status = await _drain(redis, analytics, SinkSettings(batch_size=1000))
        assert status.dead_lettered == 7 and status.inserted == 20
        dead = await redis.xrange(DEAD_KEY)
        assert (await redis.xpending(STREAM_KEY, GROUP))["pending"] == 0
        await redis.aclose()
        return list(dead)

    dead = asyncio.run(go())
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(reasons) == 7
    assert any(r.startswith("not JSON") for r in reasons)
    assert "recipient_index must be an integer" in reasons
    assert "unsupported event version 99" in reasons
    assert "event_id must be a UUID string" in reasons
    assert any("browser" in r for r in reasons), reasons
    assert any("no 'e' field" in r for r in reasons)
    assert truncated in [fields[b"e"] for _, fields in dead]
    assert len(_rows(chdb_client, campaign)) == 20


def test_sequence_rules(redis_url: str, analytics: AnalyticsStore, chdb_client: Client) -> None:
    campaign = _campaign_id()
    _add_campaign(chdb_client, campaign, links=3)
    t = time.time()
    burst = [click(campaign, 1, link, at=t + 0.4 * link, ip=f"192.0.2.{link}") for link in range(3)]
    slow = [click(campaign, 2, link, at=t + 5 * link, ip=f"192.0.2.{10 + link}") for link in range(3)]
    sweep = [click(campaign, 10 + r, 0, at=t + 0.2 * r, ip="198.51.100.99", ua=ANDROID) for r in range(5)]
    previews = [click(campaign, 20 + r, 0, at=t + 0.1 * r, ip="198.51.100.200", label="preview") for r in range(6)]
    events = sorted([*burst, *slow, *sweep, *previews], key=lambda e: int(e["time"]))

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, events)
        # Batches of 2: a burst spans batches, so events already inserted are re-emitted.
        await _drain(redis, analytics, SinkSettings(batch_size=2, batch_wait=0.01))
        await redis.aclose()

    asyncio.run(go())
    rows = {str(r["event_id"]): r for r in _rows(chdb_client, campaign)}
    assert len(rows) == len(events)
    for e in burst:
        row = rows[e["event_id"]]
        assert (row["class"], row["reason"], row["edge_class"], row["edge_reason"]) == (
            "bot", "bot:sibling-burst", "human", "human",
        )  # fmt: skip
        assert row["revision"] == 1
    assert all(rows[e["event_id"]]["class"] == "human" for e in slow)
    assert all(rows[e["event_id"]]["reason"] == "bot:sweep" for e in sweep)
    assert all(rows[e["event_id"]]["class"] == "preview" for e in previews)  # preview servers serve many


def test_sibling_rule_counts_the_links_of_the_recipients_own_variant(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    # Variants of 3, 2 and 1 links: the campaign's `links` is 3, but a recipient of the 2-link
    # variant who opens both of their links within a second is a scanner all the same.
    campaign, seed = _campaign_id(), new_seed()
    lengths = {"A": 3, "B": 2, "C": 1}
    described = {
        "seed": seed,
        "variants": [
            {
                "name": name,
                "weight": 1.0,
                "text": "t",
                "destinations": [f"https://{name}.example/{i}" for i in range(n)],
            }
            for name, n in lengths.items()
        ],
    }
    _add_campaign(chdb_client, campaign, links=3, variants=orjson.dumps(described).decode())
    split = VariantAssigner(seed, [1, 1, 1]).variants_of(0, 200)
    a, b, c = ([r for r, v in enumerate(split) if v == i][:2] for i in range(3))
    t = time.time()
    b_burst = [click(campaign, b[0], link, at=t + 0.3 * link, ip=f"192.0.2.{link + 1}") for link in (0, 1)]
    b_slow = [click(campaign, b[1], link, at=t + 6 * link, ip=f"192.0.2.{link + 11}") for link in (0, 1)]
    a_partial = [click(campaign, a[0], link, at=t + 0.3 * link, ip=f"192.0.2.{link + 21}") for link in (0, 1)]
    a_burst = [click(campaign, a[1], link, at=t + 0.3 * link, ip=f"192.0.2.{link + 31}") for link in (0, 1, 2)]
    c_twice = [click(campaign, c[0], 0, at=t + 0.2 * n, ip=f"192.0.2.{n + 41}") for n in range(3)]
    events = sorted([*b_burst, *b_slow, *a_partial, *a_burst, *c_twice], key=lambda e: int(e["time"]))

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, events)
        await _drain(redis, analytics, SinkSettings(batch_size=3, batch_wait=0.01))
        await redis.aclose()

    asyncio.run(go())
    rows = {str(r["event_id"]): r for r in _rows(chdb_client, campaign)}
    assert len(rows) == len(events)
    reasons = {name: [rows[e["event_id"]]["reason"] for e in group] for name, group in (
        ("b_burst", b_burst), ("b_slow", b_slow), ("a_partial", a_partial), ("a_burst", a_burst), ("c", c_twice),
    )}  # fmt: skip
    assert reasons == {
        "b_burst": ["bot:sibling-burst"] * 2,
        "b_slow": ["human"] * 2,
        "a_partial": ["human"] * 2,  # two of the three links of an A message
        "a_burst": ["bot:sibling-burst"] * 3,
        "c": ["human"] * 3,  # a one-link message: its link opened again is no burst
    }
    # Each row carries its recipient's variant, the rows a burst emitted again (revision 1) too.
    names = {r: ("A", "B", "C")[v] for r, v in enumerate(split)}
    assert {(row["variant"], row["revision"]) for row in rows.values() if row["reason"] == "bot:sibling-burst"} == {
        ("A", 1),
        ("B", 1),
    }
    assert all(row["variant"] == names[row["recipient_index"]] for row in rows.values())


def test_privacy_options(redis_url: str, analytics: AnalyticsStore, chdb_client: Client) -> None:
    campaign = _campaign_id()
    events = [
        click(campaign, 0, ip="203.0.113.77"),
        click(campaign, 1, ip="2001:db8:abcd:12::1"),
        click(campaign, 2, ip=""),
    ]

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, events)
        await _drain(redis, analytics, SinkSettings(truncate_ip=True, store_user_agent=False))
        await redis.aclose()

    asyncio.run(go())
    rows = _rows(chdb_client, campaign)
    assert [r["ip"] for r in sorted(rows, key=lambda r: r["recipient_index"])] == ["203.0.113.0", "2001:db8:abcd::", ""]
    assert all(r["user_agent"] == "" and r["browser"] == "Safari" and r["os_version"] == "17" for r in rows)


def test_conversions_follow_their_click(redis_url: str, analytics: AnalyticsStore, chdb_client: Client) -> None:
    campaign = _campaign_id()
    account = "acc_" + uuid.uuid4().hex[:16]
    secret = b"sink test"
    tag, sign = conversion_tag(secret, account), ClickIds(secret).issue
    first = click(campaign, 3, 1, account=account)
    later = click(campaign, 4, 0, account=account)
    attribution = Attribution(secret)

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, [first])
        await _drain(redis, analytics, SinkSettings(), attribution=attribution)
        # One click already in ClickHouse, one in the same batch as its conversion.
        await write_events(
            redis,
            [
                later,
                conversion(sign(first["event_id"]), 20.5, "o-1", tag=tag),
                conversion(sign(later["event_id"]), 5, tag=tag),
            ],
        )
        await _drain(redis, analytics, SinkSettings(), attribution=attribution)
        await redis.aclose()

    asyncio.run(go())
    converted = [r for r in _rows(chdb_client, campaign) if r["type"] == "conversion"]
    assert sorted((r["recipient_index"], r["link_index"], float(r["value"])) for r in converted) == [
        (3, 1, 20.5),
        (4, 0, 5.0),
    ]
    assert all(r["account"] == account for r in converted)


def test_events_of_every_kind_carry_the_recipients_variant(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    # The second sink (its campaign cache empty) sees no human click at all: the variants are
    # loaded for the campaigns of previews, bots and attributed conversions too.
    # A fixed seed: its split of recipients 7 to 25 has both variants, whatever the run.
    campaign, seed, account = _campaign_id(), "00112233445566778899aabbccddeeff", "acc_" + uuid.uuid4().hex[:16]
    described = {
        "seed": seed,
        "variants": [
            {"name": name, "weight": weight, "text": "t", "destinations": ["https://x.example"]}
            for name, weight in (("ctrl", 1.0), ("alt-2", 3.0))
        ],
    }
    _add_campaign(chdb_client, campaign, links=1, variants=orjson.dumps(described).decode())
    names = {r: ("ctrl", "alt-2")[v] for r, v in enumerate(VariantAssigner(seed, [1, 3]).variants_of(0, 40))}
    secret = b"variant test"
    first = click(campaign, 7, 0, account=account)
    t = time.time()
    others = [
        *(click(campaign, r, 0, label="preview", at=t + r, ip=f"192.0.2.{r}") for r in range(10, 20)),
        *(click(campaign, r, 0, label="bot", at=t + r, ip=f"198.51.100.{r}") for r in range(20, 26)),
        click(campaign, -1, 0, label="bot", at=t + 30),
        conversion(
            ClickIds(secret).issue(first["event_id"]), 9.5, "v-1", at=t + 40, tag=conversion_tag(secret, account)
        ),
    ]
    attribution = Attribution(secret)
    delivered: list[Row] = []

    async def after_insert(rows: Sequence[Row], again: Sequence[Row]) -> None:
        delivered.extend([*rows, *again])

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        for batch in ([first], others):
            await write_events(redis, batch)
            await _drain(redis, analytics, SinkSettings(), attribution=attribution, after_insert=after_insert)
        await redis.aclose()

    asyncio.run(go())
    # Webhook receivers get the variant too.
    assert len(delivered) == 1 + len(others)
    for row in delivered:
        kind = "conversion" if row.event["type"] == "conversion" else "click"
        body = payload(row.event, row.extra, kind, None, None)
        assert body["variant"] == (names.get(row.event["recipient_index"]) or None), row.event
    rows = _rows(chdb_client, campaign)
    assert len(rows) == 1 + len(others)
    assert {(r["type"], r["class"]) for r in rows} == {("click", "human"), ("click", "preview"), ("click", "bot"),
                                                       ("conversion", "human")}  # fmt: skip
    assert [r["variant"] for r in rows] == [names.get(r["recipient_index"], "") for r in rows]
    assert {r["variant"] for r in rows} == {"ctrl", "alt-2", ""}
    (converted,) = [r for r in rows if r["type"] == "conversion"]
    assert (converted["recipient_index"], converted["variant"]) == (7, names[7])


def test_clickhouse_outage_keeps_events_and_shows_the_backlog(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = _campaign_id()
    real_insert = EventInserter.insert
    down = True

    def flaky(self: EventInserter, client: Client, lines: Any, token: str) -> None:
        if down:
            raise OperationalError("connection refused")
        real_insert(self, client, lines, token)

    monkeypatch.setattr(EventInserter, "insert", flaky)

    async def go() -> None:
        nonlocal down
        redis = await fresh_stream(redis_url)
        await write_events(redis, [click(campaign, i, at=time.time() - 3) for i in range(50)])
        sink = EventSink(redis, analytics, SinkSettings(retry_min=0.05, retry_max=0.2))
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        await asyncio.sleep(1.5)
        assert not sink.status.clickhouse_up and sink.status.insert_failures >= 2
        backlog = await stream_backlog(redis)
        assert backlog.events == 50 and backlog.oldest_seconds >= 1.2
        assert sink.status.backlog == 50 and sink.status.oldest_unsent_seconds >= 0.5
        down = False
        for _ in range(100):
            await asyncio.sleep(0.05)
            if (await stream_backlog(redis)).events == 0:
                break
        stop.set()
        await task
        assert sink.status.clickhouse_up and sink.status.inserted == 50
        metrics = sink.status.registry.get_sample_value("shortcore_sink_events_inserted_total")
        assert metrics == 50
        await redis.aclose()

    asyncio.run(go())
    assert len(_rows(chdb_client, campaign)) == 50


def test_the_sink_outlives_a_redis_restart(tmp_path: Path, analytics: AnalyticsStore, chdb_client: Client) -> None:
    store = EmbeddedStore(tmp_path / "redis")
    url = store.start()
    campaign = _campaign_id()
    before, after = [click(campaign, i) for i in range(20)], [click(campaign, 100 + i) for i in range(20)]

    async def go() -> None:
        redis = connect(url)
        await write_events(redis, before)
        sink = EventSink(redis, analytics, SinkSettings(batch_wait=0.01, lease_ttl=0.6))
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        try:
            deadline = time.monotonic() + 20
            while sink.status.inserted < len(before):
                assert time.monotonic() < deadline and not task.done(), "the sink did not drain the stream"
                await asyncio.sleep(0.02)
            store.stop()  # Redis goes away under the running sink, then comes back with its data
            await asyncio.sleep(1.0)
            assert not task.done()
            store.start()
            await write_events(redis, after)
            deadline = time.monotonic() + 30
            while sink.status.inserted < len(before) + len(after):
                assert time.monotonic() < deadline and not task.done(), "the sink did not come back"
                await asyncio.sleep(0.05)
            assert sink.status.active
        finally:
            stop.set()
            await task
            sink.close()
            await redis.aclose()

    try:
        asyncio.run(go())
    finally:
        store.stop()
    assert len(_rows(chdb_client, campaign)) == len(before) + len(after)


def test_pending_events_of_a_dead_consumer_are_taken_over(
    redis_url: str, analytics: AnalyticsStore, chdb_client: Client
) -> None:
    campaign = _campaign_id()

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await redis.xgroup_create(STREAM_KEY, GROUP, id="0", mkstream=True)
        await write_events(redis, [click(campaign, i) for i in range(30)])
        # A consumer reads a batch, then dies before inserting it.
        await redis.xreadgroup(GROUP, "dead-consumer", {STREAM_KEY: ">"}, count=30)
        assert (await redis.xpending(STREAM_KEY, GROUP))["pending"] == 30
        await asyncio.sleep(0.3)
        await _drain(redis, analytics, SinkSettings(claim_idle=0.2))
        await redis.aclose()

    asyncio.run(go())
    assert len(_rows(chdb_client, campaign)) == 30


def test_one_sink_works_while_another_stands_by(redis_url: str, analytics: AnalyticsStore, chdb_client: Client) -> None:
    campaign = _campaign_id()
    first_events = [click(campaign, i) for i in range(300)]
    later_events = [click(campaign, 1000 + i) for i in range(200)]
    settings = SinkSettings(batch_size=50, batch_wait=0.01, lease_ttl=0.6)

    async def until(condition: Any, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not await condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.02)

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await redis.delete(LEASE_KEY)
        await write_events(redis, first_events)
        first, second = EventSink(redis, analytics, settings), EventSink(redis, analytics, settings)
        stop_first, stop_second = asyncio.Event(), asyncio.Event()
        first_task = asyncio.create_task(first.run(stop_first))

        async def first_active() -> bool:
            return first.status.active

        await until(first_active, "the first sink never took the lease")
        second_task = asyncio.create_task(second.run(stop_second))

        async def drained() -> bool:
            return (await stream_backlog(redis)).events == 0

        try:
            await until(drained, "the first sink did not drain the stream")
            await asyncio.sleep(settings.lease_ttl * 2)  # the standby has tried again, and again stood by
            assert (first.status.inserted, second.status.inserted) == (len(first_events), 0)
            assert not second.status.active and second.status.lease_holder == first.consumer
            assert second.status.snapshot()["lease_holder"] == first.consumer
            assert await SinkLease(redis, "anyone").current() == first.consumer

            # The active sink stops: the standby takes over and drains what comes next.
            stop_first.set()
            await first_task

            async def second_active() -> bool:
                return second.status.active

            await until(second_active, "the standby did not take over")
            assert await SinkLease(redis, "anyone").current() == second.consumer
            await write_events(redis, later_events)
            await until(drained, "the second sink did not drain the stream")
            assert second.status.inserted == len(later_events)
        finally:
            stop_first.set()
            stop_second.set()
            await asyncio.gather(first_task, second_task)
            first.close()
            second.close()
        # Stopped, the holder gave the lease up.
        assert await redis.get(LEASE_KEY) is None
        await redis.aclose()

    asyncio.run(go())
    # Each event once, and inserted once: nobody did the work twice.
    ((total, distinct),) = chdb_client.query(
        f"SELECT count(), uniqExact(event_id) FROM {DATABASE}.events WHERE campaign_id = %(c)s",
        parameters={"c": campaign},
    ).result_rows
    assert (total, distinct) == (len(first_events) + len(later_events),) * 2


def test_a_lost_lease_is_noticed_and_a_lapsed_one_taken(redis_url: str) -> None:
    async def go() -> None:
        redis = connect(redis_url)
        await redis.delete(LEASE_KEY)
        one, two = SinkLease(redis, "one", ttl=0.3), SinkLease(redis, "two", ttl=0.3)
        assert await one.acquire()
        assert not await two.acquire()
        assert await one.acquire()  # the holder's own try renews
        await two.release()  # not the holder: nothing happens
        assert await one.current() == "one"
        await asyncio.sleep(0.5)  # "one" died: its lease lapses
        assert await two.acquire()
        assert not await one.renew()
        await two.release()
        assert await two.current() is None
        with pytest.raises(ValueError, match="positive"):
            SinkLease(redis, "three", ttl=0)
        await redis.aclose()

    asyncio.run(go())


def test_settings_from_env() -> None:
    env = {
        "SHORTCORE_SINK_BATCH_SIZE": "500",
        "SHORTCORE_TRUNCATE_IP": "yes",
        "SHORTCORE_COUNTRY_HEADER": "CF-IPCountry",
    }
    settings = SinkSettings.from_env(env)
    assert (settings.batch_size, settings.truncate_ip, settings.country_header) == (500, True, "CF-IPCountry")
    with pytest.raises(ValueError, match="SHORTCORE_STORE_USER_AGENT"):
        SinkSettings.from_env({"SHORTCORE_STORE_USER_AGENT": "maybe"})


# ---------------------------------------------------------------------------------------------
# SIGKILL in the middle of 100,000 events

FAULT_EVENTS = 100_000


def _sink_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "shortcore.sink"], env=env, stdout=out, stderr=out)


def _count_in(clickhouse_url: str) -> tuple[int, int, int]:
    """Counts in another process: chDB opens one data directory per process."""
    code = (
        "import sys; from shortcore.analytics import connect; c = connect(sys.argv[1]); "
        "print(*c.query('SELECT (SELECT count() FROM shortcore.events FINAL), uniqExact(event_id), count() "
        "FROM shortcore.events').result_rows[0])"
    )
    out = subprocess.run([sys.executable, "-c", code, clickhouse_url], capture_output=True, check=True, text=True)
    final, distinct, raw = map(int, out.stdout.split())
    return final, distinct, raw


@pytest.mark.parametrize("clickhouse", ["chdb", "http"])
def test_sigkill_in_the_middle_loses_and_doubles_nothing(
    tmp_path: Path, clickhouse: str, request: pytest.FixtureRequest
) -> None:
    """The sink process is killed half way through; the next one takes over once the dead one's
    lease lapses (chDB opens a directory in one process at a time, so it starts after the kill).
    ``http``: the same with a ClickHouse server (the test gateway) that outlives both sinks."""
    store = EmbeddedStore(tmp_path / "redis")
    url = store.start()
    gateway = Gateway(tmp_path / "clickhouse-http") if clickhouse == "http" else None
    clickhouse_url = gateway.start() if gateway is not None else f"chdb://{tmp_path / 'clickhouse'}"
    if gateway is not None:
        request.addfinalizer(gateway.stop)
    env = {
        **os.environ,
        "SHORTCORE_REDIS_URL": url,
        "SHORTCORE_CLICKHOUSE_URL": clickhouse_url,
        "SHORTCORE_DATA_DIR": str(tmp_path),
        "SHORTCORE_SINK_BATCH_SIZE": "5000",
        "SHORTCORE_SINK_CLAIM_IDLE": "1",
        "SHORTCORE_SINK_LEASE_TTL": "2",
    }
    events = bulk(FAULT_EVENTS)
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:

        async def feed_and_kill() -> int:
            nonlocal first
            redis = connect(url)
            # Everything is in the stream before the sink starts (its group reads from the start),
            # so it cannot drain the stream before the kill however fast it is.
            for start in range(0, FAULT_EVENTS, 10_000):
                await write_events(redis, events[start : start + 10_000])
            first = _sink_process(env, tmp_path / "sink.log")
            # Kill once part of the events is in: some inserted, some pending, some never read.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                backlog = await stream_backlog(redis)
                if backlog.events < FAULT_EVENTS * 0.7:
                    break
                await asyncio.sleep(0.01)
            first.send_signal(signal.SIGKILL)
            first.wait()
            left = (await stream_backlog(redis)).events
            holder = await SinkLease(redis, "test").current()
            assert holder is not None and f"-{first.pid}-" in holder  # the dead sink's lease, not lapsed yet
            await redis.aclose()
            return left

        left = asyncio.run(feed_and_kill())
        assert 0 < left < FAULT_EVENTS
        second = _sink_process(env, tmp_path / "sink.log")

        async def wait_empty() -> None:
            redis = connect(url)
            deadline = time.monotonic() + 120
            while (await stream_backlog(redis)).events and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await redis.aclose()

        asyncio.run(wait_empty())
        second.send_signal(signal.SIGTERM)
        log = (tmp_path / "sink.log").read_text()
        assert second.wait(30) == 0, log
        # The second stood by while the dead one's lease lasted, then took over.
        assert first is not None
        waited = [line for line in log.splitlines() if f"-{second.pid}-" in line and "stands by" in line]
        assert waited and f"-{first.pid}-" in waited[0].split("stands by", 1)[1], log
        after = log.split(waited[0], 1)[1].splitlines()
        assert any(f"-{second.pid}-" in line and "holds the lease and works" in line for line in after), log
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        store.stop()
    final, distinct, raw = _count_in(clickhouse_url)
    print(f"\nfault test: {left} events left at the kill; FINAL {final}, distinct {distinct}, raw rows {raw}")
    assert (final, distinct) == (FAULT_EVENTS, FAULT_EVENTS)


def test_module_constants_match_the_edge() -> None:
    from shortcore import events

    assert sink_module.STREAM_KEY == events.STREAM_KEY
    assert sink_module.EVENT_FIELD.decode() == events.EVENT_FIELD
    assert sink_module.EVENT_VERSION == events.EVENT_VERSION
    assert orjson.loads(encode(click("cmp_x", 1)))["v"] == events.EVENT_VERSION
