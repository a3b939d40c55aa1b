"""Conversions: the tag, field checks, attribution at ingest (real chDB), the API and the pixel."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from shortcore import accounts
from shortcore.analytics import DATABASE, MIGRATIONS, AnalyticsStore, migrate
from shortcore.clickids import ClickIds
from shortcore.config import Settings
from shortcore.control import create_control_app
from shortcore.conversions import (
    CONVERSION_SCRIPT,
    PHONE_BY_HASH_SQL,
    Attribution,
    Windows,
    conversion_tag,
    field_error,
    phone_hash,
    tag_account,
)
from shortcore.edge import PIXEL_GIF, EdgeApp
from shortcore.events import STREAM_KEY, EventIds
from shortcore.sink import EventInserter, SinkSettings
from shortcore.store import connect

SECRET = b"conversion test secret"
SIGN = ClickIds(SECRET).issue
IDS = EventIds()
NOW_MS = int(time.time() * 1000)
HOUR = 3_600_000
DAY = 24 * HOUR


def new_account() -> str:
    return "acc_" + secrets.token_hex(8)


def test_tag_is_self_checking() -> None:
    account = new_account()
    tag = conversion_tag(SECRET, account)
    assert tag.startswith("ct_") and len(tag) == 35
    assert tag_account(SECRET, tag) == account
    forged = tag[:-1] + ("0" if tag[-1] != "0" else "1")
    for bad in (forged, tag.upper(), "", "ct_", "nope", tag + "0", conversion_tag(b"other secret", account)):
        assert tag_account(SECRET, bad) is None


@pytest.mark.parametrize(
    ("event", "value", "currency", "order", "ok"),
    [
        ("purchase", 49.9, "EUR", "A-1", True),
        (None, None, None, None, True),
        ("sign up", 0, "", "", True),
        ("x" * 65, None, None, None, False),
        ("<script>", None, None, None, False),
        (12, None, None, None, False),
        (None, -1, None, None, False),
        (None, 1e13, None, None, False),
        (None, float("nan"), None, None, False),
        (None, "12", None, None, False),
        (None, True, None, None, False),
        (None, None, "eur", None, False),
        (None, None, "EURO", None, False),
        (None, None, None, "x" * 129, False),
        (None, None, None, "a\nb", False),
        (None, None, None, 5, False),
    ],
)
def test_field_checks(event: Any, value: Any, currency: Any, order: Any, ok: bool) -> None:
    assert (field_error(event, value, currency, order) is None) is ok


# ---------------------------------------------------------------------------------------------
# Attribution through the sink's inserter, on real chDB


class World:
    """Two accounts; account A sent two campaigns to the same phone, B one to another phone."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.a, self.b = new_account(), new_account()
        self.c1, self.c2, self.cb = (f"cmp_{secrets.token_hex(8)}" for _ in range(3))
        self.phone, self.other_phone = "+4915100000001", "+4915100000002"
        self.inserter = EventInserter(SinkSettings(), Attribution(SECRET, self.windows))
        self.stream = 0
        self.add_message(self.c1, self.a, 0, self.phone, NOW_MS - 10 * DAY)
        self.add_message(self.c1, self.a, 1, "+4915100000009", NOW_MS - 10 * DAY)
        self.add_message(self.c2, self.a, 0, self.phone, NOW_MS - 2 * HOUR)
        self.add_message(self.cb, self.b, 0, self.other_phone, NOW_MS - 2 * HOUR)

    @staticmethod
    def windows(account: str) -> Windows:
        return Windows(30, 24)

    def add_message(self, campaign: str, account: str, index: int, phone: str, sent_ms: int) -> None:
        sent = dt.datetime.fromtimestamp(sent_ms / 1000, dt.UTC)
        self.client.insert(
            f"{DATABASE}.messages",
            [[campaign, account, index, index + 1, phone, f"i{index}", {}, "", "GSM-7", 2, 2, 1, 1, [], sent, sent]],
            column_names=[
                "campaign_id", "account", "recipient_index", "line", "phone", "recipient_id", "fields", "text",
                "encoding", "characters", "units", "segments", "segments_before", "short_urls", "sent_at", "created_at",
            ],
        )  # fmt: skip

    def click(self, campaign: str, account: str, recipient: int, at: int, klass: str = "human") -> dict[str, Any]:
        return {
            "v": 1, "event_id": IDS.new(at / 1000), "time": at, "type": "click", "outcome": "ok", "account": account,
            "campaign_id": campaign, "recipient_index": recipient, "link_index": 0, "class": klass,
            "reason": "test", "ip": "192.0.2.1", "user_agent": "test", "headers": {}, "click_id": "",
        }  # fmt: skip

    def pixel(self, tag: str, at: int = NOW_MS, **fields: Any) -> dict[str, Any]:
        event = {
            "v": 1, "event_id": IDS.new(at / 1000), "time": at, "type": "conversion", "outcome": "ok",
            "account": "", "campaign_id": "", "recipient_index": -1, "link_index": -1, "class": "human",
            "reason": "", "headers": {}, "click_param": "", "click_cookie": "", "click_id": "",
            "conversion_tag": tag, "event_name": "purchase", "value": 10.0, "value_raw": "", "currency": "EUR",
            "order_id": "",
        }  # fmt: skip
        event.update(fields)
        return event

    def api(self, account: str, at: int = NOW_MS, **fields: Any) -> dict[str, Any]:
        event = self.pixel("", at, source="api", account=account, reason="api")
        event.update(fields)
        return event

    def ingest(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Through the sink's inserter, as the sink does; returns the events as stored."""
        entries = []
        for event in events:
            self.stream += 1
            entries.append((f"{NOW_MS}-{self.stream}".encode(), orjson.dumps(event)))
        batch = self.inserter.prepare(self.client, entries)
        assert not batch.dead, batch.dead
        assert not self.inserter.insert_batch(self.client, batch)
        return [row.event for row in batch.rows]

    def stored(self, event_id: str) -> dict[str, Any]:
        rows = self.client.query(
            f"SELECT outcome, account, campaign_id, recipient_index, link_index, toString(click_id) "
            f"FROM {DATABASE}.events FINAL WHERE event_id = %(id)s",
            parameters={"id": event_id},
        ).named_results()
        return next(iter(rows))


@pytest.fixture(scope="module")
def world(chdb_client: Client) -> World:
    migrate(chdb_client)
    return World(chdb_client)


def test_pixel_credits_the_recipients_last_human_click(world: World) -> None:
    old = world.click(world.c1, world.a, 0, NOW_MS - 5 * DAY)
    newer = world.click(world.c2, world.a, 0, NOW_MS - HOUR)
    bot = world.click(world.c2, world.a, 0, NOW_MS - 30 * 60_000, klass="bot")
    world.ingest(old, newer, bot)
    tag = conversion_tag(SECRET, world.a)
    # The cookie names the old click; the credit goes to the newest human click of that phone.
    conversion = world.pixel(tag, click_cookie=SIGN(old["event_id"]), click_id=SIGN(old["event_id"]))
    world.ingest(conversion)
    stored = world.stored(conversion["event_id"])
    assert stored["outcome"] == "click"
    assert (stored["account"], stored["campaign_id"], stored["recipient_index"]) == (world.a, world.c2, 0)
    assert stored["toString(click_id)"] == newer["event_id"]


def test_click_and_conversion_in_one_batch(world: World) -> None:
    click = world.click(world.c1, world.a, 1, NOW_MS - 1000)
    conversion = world.pixel(conversion_tag(SECRET, world.a), click_param=SIGN(click["event_id"]))
    world.ingest(click, conversion)
    stored = world.stored(conversion["event_id"])
    assert (stored["outcome"], stored["campaign_id"], stored["recipient_index"]) == ("click", world.c1, 1)


def test_nothing_is_credited_wrongly(world: World) -> None:
    b_click = world.click(world.cb, world.b, 0, NOW_MS - HOUR)
    # A's recipient 1 clicked; a visitor who guesses or alters that click id must not get it.
    a_click = world.click(world.c1, world.a, 1, NOW_MS - HOUR)
    world.ingest(b_click, a_click)
    tag_a = conversion_tag(SECRET, world.a)
    genuine = SIGN(a_click["event_id"])
    other_mac = SIGN(b_click["event_id"])[-12:]
    foreign = world.pixel(tag_a, click_param=SIGN(b_click["event_id"]))
    forged_cookie = world.pixel(tag_a, click_cookie="0190c2d4-1111-7aaa-8bbb-0123456789ab.AAAAAAAAAAAA")
    bare_event_id = world.pixel(tag_a, click_cookie=a_click["event_id"])  # the guessable part alone
    altered_mac = world.pixel(tag_a, click_param=genuine[:-12] + other_mac)
    other_secret = world.pixel(tag_a, click_cookie=ClickIds(b"another deployment").issue(a_click["event_id"]))
    forged_api = world.api(world.a, click_id=genuine[:-1] + ("A" if genuine[-1] != "A" else "B"))
    garbage_cookie = world.pixel(tag_a, click_cookie="'; DROP TABLE events; --")
    unknown_tag = world.pixel("ct_" + "0" * 32, click_param=SIGN(b_click["event_id"]))
    no_tag = world.pixel("", click_param=SIGN(b_click["event_id"]))
    negative = world.pixel(tag_a, value=-5.0, click_param=SIGN(b_click["event_id"]))
    unparsable = world.pixel(tag_a, value=None, value_raw="12abc")
    bad_currency = world.pixel(tag_a, currency="EURO")
    world.ingest(
        foreign, forged_cookie, bare_event_id, altered_mac, other_secret, forged_api, garbage_cookie, unknown_tag,
        no_tag, negative, unparsable, bad_currency,
    )  # fmt: skip
    expected = {
        foreign["event_id"]: "foreign-click",
        forged_cookie["event_id"]: "unattributed",
        bare_event_id["event_id"]: "unattributed",
        altered_mac["event_id"]: "unattributed",
        other_secret["event_id"]: "unattributed",
        forged_api["event_id"]: "unattributed",
        garbage_cookie["event_id"]: "unattributed",
        unknown_tag["event_id"]: "unknown-tag",
        no_tag["event_id"]: "no-cid",
        negative["event_id"]: "invalid",
        unparsable["event_id"]: "invalid",
        bad_currency["event_id"]: "invalid",
    }
    for event_id, outcome in expected.items():
        stored = world.stored(event_id)
        assert stored["outcome"] == outcome, (event_id, stored)
        assert stored["campaign_id"] == "" and stored["recipient_index"] == -1
    # A forged id names no click, not even in the stored row.
    for forged in (forged_cookie, bare_event_id, altered_mac, other_secret, forged_api, garbage_cookie):
        assert world.stored(forged["event_id"])["toString(click_id)"] == ""
    assert world.stored(unknown_tag["event_id"])["account"] == ""
    assert world.stored(foreign["event_id"])["account"] == world.a
    # The genuine id of the same click is credited (to that recipient's latest human click).
    honest = world.pixel(tag_a, click_cookie=genuine)
    world.ingest(honest)
    stored = world.stored(honest["event_id"])
    assert (stored["outcome"], stored["campaign_id"], stored["recipient_index"]) == ("click", world.c1, 1)
    assert stored["toString(click_id)"] not in ("", genuine)


def test_phone_view_through_and_windows(world: World) -> None:
    # A phone of B's: a message two hours ago, no human click (only a preview) -> view-through.
    phone = "+4915100000003"
    world.add_message(world.cb, world.b, 1, phone, NOW_MS - 2 * HOUR)
    preview = world.click(world.cb, world.b, 1, NOW_MS - HOUR, klass="preview")
    world.ingest(preview)
    view = world.api(world.b, phone_hash=phone_hash(phone))
    # Three days later the view-through window (24 h) is over: unattributed.
    late = world.api(world.b, at=NOW_MS + 3 * DAY, phone_hash=phone_hash(phone))
    nobody = world.api(world.b, phone_hash=phone_hash("+4915199999999"))
    by_token = world.api(world.a, via_campaign=world.c1, via_recipient=1)
    world.ingest(view, late, nobody, by_token)
    stored = world.stored(view["event_id"])
    assert (stored["outcome"], stored["campaign_id"], stored["link_index"]) == ("view", world.cb, -1)
    assert world.stored(late["event_id"])["outcome"] == "unattributed"
    assert world.stored(nobody["event_id"])["outcome"] == "unattributed"
    assert world.stored(by_token["event_id"])["outcome"] == "click"
    assert world.stored(by_token["event_id"])["campaign_id"] == world.c1


def test_the_same_order_counts_once(world: World) -> None:
    tag = conversion_tag(SECRET, world.a)
    first = world.pixel(tag, order_id="ORDER-1")
    again_in_batch = world.pixel(tag, order_id="ORDER-1")
    world.ingest(first, again_in_batch)
    later = world.api(world.a, order_id="ORDER-1")
    other_account = world.api(world.b, order_id="ORDER-1")
    world.ingest(later, other_account)
    assert world.stored(first["event_id"])["outcome"] == "unattributed"
    assert world.stored(again_in_batch["event_id"])["outcome"] == "duplicate"
    assert world.stored(later["event_id"])["outcome"] == "duplicate"
    assert world.stored(other_account["event_id"])["outcome"] == "unattributed"
    # A replay of the first one is not a duplicate of itself.
    assert world.ingest(first)[0]["outcome"] == "unattributed"


def _granules(client: Client, sql: str, parameters: dict[str, Any]) -> tuple[int, int]:
    """Granules the primary key leaves to read, of all, from ``EXPLAIN indexes = 1``."""
    plan = [row[0] for row in client.query("EXPLAIN indexes = 1 " + sql, parameters=parameters).result_rows]
    found = [line.split(":", 1)[1].strip() for line in plan if line.strip().startswith("Granules:") and "/" in line]
    assert found, plan
    chosen, total = found[-1].split("/")  # the last index applied: the primary key
    return int(chosen), int(total)


def test_phone_hash_lookup_is_indexed(world: World) -> None:
    account = new_account()
    campaign = f"cmp_{secrets.token_hex(8)}"
    sent = dt.datetime.fromtimestamp(NOW_MS / 1000, dt.UTC)
    rows = [
        [campaign, account, i, i + 1, f"+4916{i:09d}", "", {}, "", "GSM-7", 1, 1, 1, 1, [], sent, sent]
        for i in range(40_000)
    ]
    world.client.insert(
        f"{DATABASE}.messages",
        rows,
        column_names=[
            "campaign_id", "account", "recipient_index", "line", "phone", "recipient_id", "fields", "text",
            "encoding", "characters", "units", "segments", "segments_before", "short_urls", "sent_at", "created_at",
        ],
    )  # fmt: skip
    wanted = {"a": account, "h": phone_hash("+4916000031337")}
    assert world.client.query(PHONE_BY_HASH_SQL, parameters=wanted).result_rows == [("+4916000031337",)]
    # One part: the store is shared with other tests, and each part of theirs whose key range
    # spans this account adds a granule of its own to the plan, however good the index.
    world.client.command(f"OPTIMIZE TABLE {DATABASE}.messages_by_phone FINAL")
    chosen, total = _granules(world.client, PHONE_BY_HASH_SQL, wanted)
    # The same question of the messages table (ordered by campaign) reads every granule.
    scan = f"SELECT phone FROM {DATABASE}.messages WHERE account = %(a)s AND lower(hex(SHA256(phone))) = %(h)s"
    scanned, scan_total = _granules(world.client, scan, wanted)
    assert scan_total >= 5 and scanned == scan_total
    assert total >= 5 and chosen <= 2, (chosen, total)
    # Migration 2 run again (a crash before it was recorded) leaves one row per message.
    for statement in MIGRATIONS[1].statements:
        world.client.command(statement)
    counted = world.client.query(
        f"SELECT count() FROM {DATABASE}.messages_by_phone FINAL WHERE account = %(a)s", parameters=wanted
    ).result_rows
    assert counted == [(40_000,)]


# ---------------------------------------------------------------------------------------------
# The API


@pytest.fixture(scope="module")
def api(redis_url: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    migrate(chdb_client)
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("data")), redis_url=redis_url, secret="api", base_url="https://ul.example"
    )
    with TestClient(create_control_app(settings, analytics=AnalyticsStore(chdb_client))) as client:
        yield client


@pytest.fixture
def key(redis_url: str) -> str:
    async def make() -> str:
        redis = connect(redis_url)
        try:
            _, key = await accounts.create_account(redis, "conversions", default_region="DE")
            return key.secret
        finally:
            await redis.aclose()

    return asyncio.run(make())


def stream_event(redis_url: str, event_id: str) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        redis = connect(redis_url)
        try:
            for _, fields in await redis.xrevrange(STREAM_KEY, count=50):
                event: dict[str, Any] = orjson.loads(fields[b"e"])
                if event["event_id"] == event_id:
                    return event
            return None
        finally:
            await redis.aclose()

    return asyncio.run(read())


def test_api_conversion(api: TestClient, key: str, redis_url: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"phone": "0151 23456789", "event": "purchase", "value": 49.9, "currency": "EUR", "order_id": "X-1"}
    response = api.post("/api/v1/conversions", json=body, headers=headers)
    assert response.status_code == 202, response.text
    event_id = response.json()["id"]
    event = stream_event(redis_url, event_id)
    assert event is not None
    assert event["phone_hash"] == phone_hash("+4915123456789")
    assert (event["source"], event["value"], event["currency"], event["order_id"]) == ("api", 49.9, "EUR", "X-1")
    again = api.post("/api/v1/conversions", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == {"id": event_id, "status": "duplicate", "order_id": "X-1"}
    tag = api.get("/api/v1/conversions/tag", headers=headers).json()
    assert tag["pixel_url"] == f"https://ul.example/c_t?cid={tag['tag']}"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"click_id": "not-a-uuid"}, "invalid_field"),
        ({"click_id": "0190c2d4-1111-7aaa-8bbb-0123456789ab"}, "invalid_field"),
        ({"click_id": "0190c2d4-1111-7aaa-8bbb-0123456789ab.AAAAAAAAAAAA"}, "forged_click"),
        ({"click_id": ClickIds(b"another deployment").issue("0190c2d4-1111-7aaa-8bbb-0123456789ab")}, "forged_click"),
        ({"click_id": 12}, "invalid_field"),
        ({"phone": "nope"}, "invalid_field"),
        ({"phone_sha256": "abc"}, "invalid_field"),
        ({"token": "zzzzzzz"}, "unknown_token"),
        ({"token": "x"}, "unknown_token"),
        ({"value": -1}, "invalid_field"),
        ({"value": "12"}, "invalid_field"),
        ({"value": 1e300}, "invalid_field"),
        ({"currency": "euro"}, "invalid_field"),
        ({"event": ["purchase"]}, "invalid_field"),
        ({"order_id": {"id": 1}}, "invalid_field"),
        ({"time": "yesterday"}, "invalid_field"),
        ({"time": 1}, "invalid_field"),
        ({"tag": "ct_x"}, "unknown_field"),
    ],
)
def test_api_conversion_bad_input(api: TestClient, key: str, body: dict[str, Any], code: str) -> None:
    response = api.post("/api/v1/conversions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_api_conversion_needs_a_key(api: TestClient) -> None:
    response = api.post("/api/v1/conversions", json={})
    assert response.status_code == 401
    bad = api.post("/api/v1/conversions", content=b"{", headers={"Authorization": "Bearer sck_nope"})
    assert bad.status_code == 401


# ---------------------------------------------------------------------------------------------
# The edge: the script, and always the GIF


def test_pixel_and_script(redis_url: str, tmp_path: Path) -> None:
    app = EdgeApp(Settings(data_dir=tmp_path, redis_url=redis_url, secret="edge"))
    with TestClient(app) as client:
        script = client.get("/c_t.js")
        assert script.status_code == 200 and script.content == CONVERSION_SCRIPT
        assert script.headers["content-type"].startswith("text/javascript")
        assert len(script.content) < 1024
        for query in ("", "cid=ct_nope", "cid=x&value=-1&currency=%00%ff", "value=abc&value=1", "cid=" + "x" * 5000):
            client.cookies.set("sc_click", "forged\x7f")
            response = client.get(f"/c_t?{query}")
            assert response.status_code == 200 and response.content == PIXEL_GIF, query
            assert response.headers["content-type"] == "image/gif"
