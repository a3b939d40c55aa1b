"""shortcore's analytics over ClickHouse's HTTP interface (``http://…``), with a real Valkey.

The server is ClickHouse's engine (chDB) behind the test gateway of tests/chhttp.py, in a process of
its own: the test process reaches it only over HTTP, as it would a ``clickhouse-server``. The stats,
clicks, SQL console and CLI over HTTP are in test_analytics_docs.py (its world runs on both stores).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_connect.driver.httpclient import HttpClient
from starlette.testclient import TestClient

from shortcore import accounts
from shortcore.analytics import DATABASE, MIGRATIONS, AnalyticsStore, connect, migrate, schema_version
from shortcore.config import Settings
from shortcore.control import create_control_app
from shortcore.sink import (
    DEAD_KEY,
    EventInserter,
    EventSink,
    SinkSettings,
    is_connection_error,
    stream_backlog,
)
from shortcore.store import AnyRedis, EmbeddedStore

from chhttp import Gateway, free_port
from sinkdata import ANDROID, IPHONE, click, encode, fresh_stream, write_events

BROWSER = {"User-Agent": IPHONE, "Accept": "text/html", "Accept-Language": "de-DE"}


@pytest.fixture(scope="module")
def ch(clickhouse_http: str) -> Iterator[Client]:
    client = connect(clickhouse_http)
    migrate(client)
    yield client
    client.close()


@pytest.fixture
def analytics(ch: Client, clickhouse_http: str) -> Iterator[AnalyticsStore]:
    store = AnalyticsStore(ch, clickhouse_http)
    yield store
    store._executor.shutdown(wait=True)  # the module owns the client


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway of the test's own, to start on an empty store or to stop and start again."""
    gateway = Gateway(tmp_path / "clickhouse-http")
    gateway.start()
    yield gateway
    gateway.stop()


def _campaign_id() -> str:
    return "cmp_" + uuid.uuid4().hex[:16]


async def _run_sink_until_drained(redis: AnyRedis, sink: EventSink, timeout: float = 30) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while (await stream_backlog(redis)).events and time.monotonic() < deadline:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        assert (await stream_backlog(redis)).events == 0, "the sink did not drain the stream in time"
    finally:
        stop.set()
        await task
        sink.close()


def _add_campaign(client: Client, campaign: str) -> None:
    client.insert(
        f"{DATABASE}.campaigns",
        [[campaign, "acc_test", "test", "text", "ul.example", 0, 100, 1, ["https://x.example/"], {}, False, None, None,
          dt.datetime.now(dt.UTC), 1, ""]],
        column_names=["id", "account", "name", "text", "domain", "seq_start", "recipients", "links", "destinations",
                      "utm", "click_param", "sent_at", "expires_at", "created_at", "version", "variants"],
    )  # fmt: skip


def _count(client: Client, campaign: str) -> tuple[int, int]:
    rows = client.query(
        f"SELECT count(), uniqExact(event_id) FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s",
        parameters={"c": campaign},
    ).result_rows
    return int(rows[0][0]), int(rows[0][1])


def test_the_client_really_talks_http(ch: Client, clickhouse_http: str) -> None:
    assert isinstance(ch, HttpClient) and clickhouse_http.startswith("http://")
    assert ch.server_version is not None and int(ch.server_version.split(".")[0]) >= 22
    assert ch.command("SELECT 1") == 1
    with pytest.raises(DatabaseError, match=r"Code: 60\. DB::Exception: .*UNKNOWN_TABLE"):
        ch.query(f"SELECT * FROM {DATABASE}.no_such_table")


def test_migrations_apply_at_start_and_once(gateway: Gateway) -> None:
    first = connect(gateway.url)
    try:
        assert migrate(first) == [m.version for m in MIGRATIONS]
        assert migrate(first) == []
        assert schema_version(first) == MIGRATIONS[-1].version
        tables = first.query("SELECT name FROM system.tables WHERE database = %(d)s", parameters={"d": DATABASE})
        names = {row[0] for row in tables.result_rows}
        assert {"campaigns", "messages", "events", "messages_by_phone", "schema_migrations"} <= names
    finally:
        first.close()
    # A restart: another client (another HTTP session) finds every migration recorded.
    store = AnalyticsStore.open(gateway.url)
    try:
        assert schema_version(store.client) == MIGRATIONS[-1].version
        assert migrate(store.client) == []
    finally:
        store.close()


def test_the_sink_drains_the_stream_into_events(redis_url: str, analytics: AnalyticsStore, ch: Client) -> None:
    campaign = _campaign_id()
    events = [
        click(campaign, i, 0, ip=f"198.51.100.{i}", ua=IPHONE if i % 2 else ANDROID, headers={"cf-ipcountry": "fr"})
        for i in range(250)
    ]

    async def go() -> None:
        redis = await fresh_stream(redis_url)
        await write_events(redis, events)
        sink = EventSink(redis, analytics, SinkSettings(batch_size=100, country_header="CF-IPCountry"))
        await _run_sink_until_drained(redis, sink)
        assert sink.status.inserted == 250 and sink.status.dead_lettered == 0 and sink.status.clickhouse_up
        await redis.aclose()

    asyncio.run(go())
    assert _count(ch, campaign) == (250, 250)
    row = next(
        ch.query(
            f"SELECT * FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s AND recipient_index = 1",
            parameters={"c": campaign},
        ).named_results()
    )
    assert (row["browser"], row["os"], row["country"], row["class"]) == ("Safari", "iOS", "FR", "human")
    assert row["headers"]["cf-ipcountry"] == "fr" and str(row["event_id"]) == events[1]["event_id"]


def test_a_replayed_batch_counts_once(ch: Client) -> None:
    campaign = _campaign_id()
    entries = [(f"{2000 + i}-0".encode(), encode(click(campaign, i))) for i in range(300)]
    inserter = EventInserter(SinkSettings())
    # No background merge may collapse rows while the raw count is read.
    ch.command(f"SYSTEM STOP MERGES {DATABASE}.events")
    try:
        batch = inserter.prepare(ch, entries)
        assert inserter.insert_batch(ch, batch) == []
        assert inserter.insert_batch(ch, batch) == []  # the same token: the server drops it
        raw = ch.command(f"SELECT count() FROM {DATABASE}.events WHERE campaign_id = %(c)s", parameters={"c": campaign})
    finally:
        ch.command(f"SYSTEM START MERGES {DATABASE}.events")
    assert raw == 300  # not 600: the insert_deduplication_token went over HTTP and was honoured
    assert _count(ch, campaign) == (300, 300)


def test_malformed_events_are_dead_lettered(redis_url: str, analytics: AnalyticsStore, ch: Client) -> None:
    campaign = _campaign_id()
    good = [click(campaign, i) for i in range(10)]
    bad = [{**click(campaign, 50), "browser": 12}, {**click(campaign, 51), "recipient_index": "seven"}]

    async def go() -> list[Any]:
        redis = await fresh_stream(redis_url)
        await write_events(redis, [*good[:5], *bad, *good[5:]])
        sink = EventSink(redis, analytics, SinkSettings(batch_size=100))
        await _run_sink_until_drained(redis, sink)
        assert (sink.status.inserted, sink.status.dead_lettered) == (10, 2)
        dead = list(await redis.xrange(DEAD_KEY))
        await redis.aclose()
        return dead

    dead = asyncio.run(go())
    reasons = {orjson.loads(fields[b"e"])["event_id"]: fields[b"reason"].decode() for _, fields in dead}
    assert reasons == {
        bad[0]["event_id"]: "browser must be a string, got 12",
        bad[1]["event_id"]: "recipient_index must be an integer",
    }
    assert _count(ch, campaign) == (10, 10)


def test_a_block_the_server_refuses_is_bad_data_not_an_outage(ch: Client) -> None:
    """Over HTTP a refused insert and an unreachable server are both exceptions; the sink must
    tell them apart (split the batch and dead-letter, or keep everything and retry)."""
    campaign = _campaign_id()
    inserter = EventInserter(SinkSettings())
    batch = inserter.prepare(ch, [(b"3000-0", encode(click(campaign, 0)))])
    with pytest.raises(DatabaseError, match=r"Code: \d+\. DB::Exception") as refused:
        inserter.insert(ch, batch.encoded.body[:-7], "truncated/1")  # a Native block cut short
    assert not is_connection_error(refused.value)
    assert _count(ch, campaign) == (0, 0)


def test_campaign_creation_writes_messages(redis_url: str, ch: Client, clickhouse_http: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=redis_url, secret="http", base_url="https://ul.example")
    key = accounts.new_api_key(redis_url, "http", default_region="DE")
    store = AnalyticsStore(ch, clickhouse_http)
    app = create_control_app(settings, analytics=store)
    try:
        with TestClient(app) as api:
            headers = {"Authorization": f"Bearer {key}"}
            recipients = ["+4915123456701", "0151 23456702", "not a phone"]
            body = {"name": "http", "text": "Hi https://shop.example/x", "recipients": recipients}
            created = api.post("/api/v1/campaigns", json=body, headers=headers)
            assert created.status_code == 201, created.text
            campaign = created.json()
            assert (campaign["recipients"], campaign["invalid"]) == (2, 1)
            lines = api.get(campaign["messages_url"], headers=headers).text.splitlines()
            assert [orjson.loads(line)["phone"] for line in lines] == ["+4915123456701", "+4915123456702"]
            listed = api.get("/api/v1/campaigns", headers=headers).json()["campaigns"]
            assert [c["id"] for c in listed] == [campaign["id"]]
    finally:
        store._executor.shutdown(wait=True)
    stored = ch.query(
        f"SELECT phone, segments, length(short_urls) FROM {DATABASE}.messages WHERE campaign_id = %(c)s "
        "ORDER BY recipient_index",
        parameters={"c": campaign["id"]},
    ).result_rows
    assert stored == [("+4915123456701", 1, 1), ("+4915123456702", 1, 1)]
    # The materialized view ran on the server for the insert that came over HTTP.
    by_phone = ch.command(
        f"SELECT count() FROM {DATABASE}.messages_by_phone WHERE campaign_id = %(c)s", parameters={"c": campaign["id"]}
    )
    assert by_phone == 2


async def _sink_through_outage(
    redis_url: str,
    store: AnalyticsStore,
    settings: SinkSettings,
    events: list[dict[str, Any]],
    interrupt: Callable[[], object],
    restore: Callable[[], object],
) -> None:
    """A sink stores the first 10 events; ``interrupt`` makes the server unusable; the rest is
    kept in the stream while the sink fails and retries; after ``restore`` everything arrives."""
    redis = await fresh_stream(redis_url)
    sink = EventSink(redis, store, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    interrupted = False
    try:
        await write_events(redis, events[:10])
        await _until(lambda: sink.status.inserted == 10)
        interrupt()
        interrupted = True
        await write_events(redis, events[10:])
        await _until(lambda: not sink.status.clickhouse_up and sink.status.insert_failures >= 2)
        assert sink.status.inserted == 10 and (await stream_backlog(redis)).events == len(events) - 10
        await asyncio.to_thread(restore)
        interrupted = False
        await _until(lambda: sink.status.inserted == len(events))
        assert sink.status.clickhouse_up and (await stream_backlog(redis)).events == 0
    finally:
        if interrupted:  # the sink must be able to finish its batch and stop
            restore()
        stop.set()
        await task
        sink.close()
        await redis.aclose()


def test_the_sink_waits_out_an_outage_and_loses_nothing(redis_url: str, gateway: Gateway) -> None:
    """The server stopped (connection refused): the sink keeps the events and retries; started
    again at the same address with the same data, every event arrives once."""
    campaign = _campaign_id()
    store = AnalyticsStore.open(gateway.url)
    settings = SinkSettings(batch_size=20, retry_min=0.05, retry_max=0.3)
    events = [click(campaign, i) for i in range(60)]
    try:
        asyncio.run(_sink_through_outage(redis_url, store, settings, events, gateway.stop, gateway.start))
        assert _count(store.client, campaign) == (60, 60)
    finally:
        store.close()


def test_a_hung_server_times_out_and_the_retried_batch_counts_once(redis_url: str, gateway: Gateway) -> None:
    """The server stops answering (SIGSTOP: connections and requests are still taken in). With
    ``send_receive_timeout`` in the URL the sink gives up on the insert after that long, keeps the
    batch and retries. Resumed, the server runs the insert it had taken in and every retry of
    it: the batch's insert_deduplication_token makes them one."""
    campaign = _campaign_id()
    store = AnalyticsStore.open(gateway.url + "?send_receive_timeout=1")
    store.client.command(f"SYSTEM STOP MERGES {DATABASE}.events")  # raw rows are what is counted
    # A known campaign: its links are read once, so what hangs later is the insert itself.
    _add_campaign(store.client, campaign)
    settings = SinkSettings(batch_size=100, retry_min=0.2, retry_max=0.5)
    events = [click(campaign, i) for i in range(50)]
    try:
        asyncio.run(_sink_through_outage(redis_url, store, settings, events, gateway.pause, gateway.resume))
        raw = store.client.command(
            f"SELECT count() FROM {DATABASE}.events WHERE campaign_id = %(c)s", parameters={"c": campaign}
        )
        assert raw == 50 and _count(store.client, campaign) == (50, 50)
    finally:
        store.close()


async def _until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.05)


def _free_port_pair() -> int:
    """A port p with p + 1 free too (the edge and the control API)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no free pair of ports")


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if value := check():
                return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not in time")


def test_serve_on_a_clickhouse_server_through_an_outage(tmp_path: Path, gateway: Gateway) -> None:
    """``shortcore serve --clickhouse-url http://…``: no chDB directory of its own; a click through
    the edge reaches the stats; with the server stopped, redirects go on, the stats say the store
    is unavailable (a 503, not a crash), and once it is back the click made meanwhile arrives."""
    data_dir, port = tmp_path / "data", _free_port_pair()
    edge, control = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHORTCORE_")}
    env["SHORTCORE_SINK_RETRY_MAX"] = "0.5"  # retry often, so the test need not wait long
    env["SHORTCORE_ADMIN_KEY"] = "admin"
    log = tmp_path / "serve.log"
    with EmbeddedStore(tmp_path / "redis") as redis_store, log.open("w") as out:
        command = [
            sys.executable, "-m", "shortcore", "serve", "--data-dir", str(data_dir), "--port", str(port),
            "--redis-url", redis_store.url, "--clickhouse-url", gateway.url, "--secret", "http", "--base-url", edge,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait(lambda: httpx.get(control + "/openapi.json").status_code == 200, 120, "the control API")
            _wait(lambda: httpx.get(edge + "/healthz").status_code == 200, 60, "the edge")
            key = accounts.new_api_key(redis_store.url, "http", default_region="DE")
            with httpx.Client(base_url=control, headers={"Authorization": f"Bearer {key}"}) as api:
                body = {
                    "name": "http",
                    "text": "Sale: https://shop.example/spring",
                    "recipients": ["+4915123450001", "+4915123450002"],
                    "sent_at": time.time() - 3600,
                }
                created = api.post("/api/v1/campaigns", json=body)
                assert created.status_code == 201, created.text
                campaign = created.json()["id"]
                messages = api.get(created.json()["messages_url"]).text.splitlines()
                links = [orjson.loads(line)["links"][0] for line in messages]
                stats_url = f"/api/v1/campaigns/{campaign}/stats"

                def human_clicks(n: int) -> bool:
                    return bool(api.get(stats_url).json().get("human_clicks") == n)

                assert httpx.get(links[0], headers=BROWSER).status_code == 302
                _wait(lambda: human_clicks(1), 30, "the first click in the stats")
                report = api.get(f"/reports/campaigns/{campaign}")
                assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")

                gateway.stop()
                during = httpx.get(links[1], headers=BROWSER)
                assert during.status_code == 302
                assert during.headers["location"].startswith("https://shop.example/spring")
                _wait(lambda: not api.get("/healthz").json()["sink"]["clickhouse_up"], 30, "the sink seeing it")
                for unavailable in (
                    api.get(stats_url),
                    api.get(f"/api/v1/campaigns/{campaign}/clicks"),
                    api.get(f"/api/v1/campaigns/{campaign}/messages?format=csv"),
                    api.post("/api/v1/sql", json={"query": "SELECT 1"}, headers={"Authorization": "Bearer admin"}),
                ):
                    assert unavailable.status_code == 503, unavailable.text
                    assert unavailable.json()["error"] == {
                        "code": "store_unavailable",
                        "message": "the analytics store is unreachable; try again shortly",
                    }
                page = api.get(f"/reports/campaigns/{campaign}")
                assert page.status_code == 503 and "unreachable" in page.text
                # Opening the store from the CLI: one clear line, the password not in it.
                url = f"http://default:s3cret@127.0.0.1:{gateway.port}/"
                cli = [sys.executable, "-m", "shortcore", "stats", campaign, "--clickhouse-url", url]
                refused = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
                assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
                assert refused.stderr.startswith(
                    f"shortcore stats: cannot open http://default:***@127.0.0.1:{gateway.port}/"
                )
                assert refused.stderr.endswith("is the ClickHouse server up?\n") and "s3cret" not in refused.stderr

                gateway.start()
                _wait(lambda: human_clicks(2), 60, "the click made during the outage")
                assert api.get("/healthz").json()["sink"]["clickhouse_up"]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    assert process.returncode == 0, log.read_text()
    assert not (data_dir / "clickhouse").exists()  # the store is the server's: no chDB directory
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


@pytest.mark.parametrize(
    ("command", "dropped"),
    [
        (["stats", "cmp_gone0000000000"], r"FROM shortcore\.campaigns"),
        (["sql", "SELECT count() FROM shortcore.events"], r"FROM shortcore\.events"),
    ],
)
def test_the_cli_says_so_when_the_server_goes_away_mid_command(
    tmp_path: Path, command: list[str], dropped: str
) -> None:
    """The store opens, then the server drops the command's query with no answer: one line saying
    the store is unreachable and exit 1, not a traceback."""
    gateway = Gateway(tmp_path / "clickhouse-http", drop=dropped)
    gateway.start()
    try:
        migrate(connect(gateway.url))
        cli = [sys.executable, "-m", "shortcore", *command, "--clickhouse-url", gateway.url]
        done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    finally:
        gateway.stop()
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"shortcore {command[0]}: the analytics store is unreachable ("), done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
