"""The figures people read, on real data: a campaign created through the control API, requests
written to the stream as the edge writes them, the sink running inside the control app. Checks
the stats definitions exactly, the clicks export, the SQL console and CLI, and runs every query
of docs/analytics.md. All of it twice: on the embedded chDB and over ClickHouse's HTTP interface
(the test gateway of tests/chhttp.py)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from shortcore import accounts
from shortcore.analytics import AnalyticsStore, migrate
from shortcore.analytics import connect as connect_clickhouse
from shortcore.cli import main
from shortcore.clickids import ClickIds
from shortcore.config import Settings
from shortcore.control import create_control_app
from shortcore.conversions import conversion_tag
from shortcore.sink import DEAD_KEY, STREAM_KEY, SinkSettings
from shortcore.store import connect

from sinkdata import ANDROID, IPHONE, click, conversion, encode

DOCS = Path(__file__).resolve().parent.parent / "docs" / "analytics.md"
ADMIN_KEY = "admin-test-key"
TEXT = "Sale! https://shop.example/a and https://shop.example/b"


@pytest.fixture(scope="module", params=["chdb", "http"])
def world(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    ch: Client
    if request.param == "chdb":
        ch = request.getfixturevalue("chdb_client")
        url = f"chdb://{ch.path}"  # type: ignore[attr-defined]
    else:
        url = request.getfixturevalue("clickhouse_http")
        ch = connect_clickhouse(url)
    migrate(ch)

    async def setup() -> tuple[str, str]:
        redis = connect(redis_url)
        await redis.delete(STREAM_KEY, DEAD_KEY)
        account, key = await accounts.create_account(redis, "analyst", default_region="DE")
        await redis.aclose()
        return account.id, key.secret

    account_id, key = asyncio.run(setup())
    tag = conversion_tag(b"docs", account_id)  # the account's pixel tag, as the customer's page has it
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("data")),
        redis_url=redis_url,
        secret="docs",
        base_url="https://ul.example",
    )
    analytics = AnalyticsStore(ch, url)
    app = create_control_app(
        settings,
        analytics=analytics,
        admin_key=ADMIN_KEY,
        sink=SinkSettings(batch_wait=0.05, country_header="CF-IPCountry"),
    )
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {key}"}
        recipients = [f"+4915123456{i:03d}" for i in range(6)]
        created = client.post(
            "/api/v1/campaigns",
            json={"name": "docs", "text": TEXT, "recipients": recipients, "sent_at": time.time() - 3600},
            headers=headers,
        ).json()
        campaign = created["id"]
        t = time.time() - 60
        c = campaign
        first = click(c, 0, 0, at=t, headers={"accept": "text/html", "cf-ipcountry": "DE"})
        events = [
            first,
            click(c, 0, 0, at=t + 30, ip="203.0.113.8"),
            click(c, 1, 0, at=t + 1, label="preview", reason="preview:whatsapp", ip="157.240.0.1", ua="WhatsApp/2"),
            click(c, 1, 0, at=t + 40, ip="203.0.113.9", ua=ANDROID),
            click(c, 2, 1, at=t + 2, label="preview", reason="preview:imessage", ip="17.0.0.1"),
            click(
                c, 3, 0, at=t + 3, label="bot", reason="bot:ua:python-requests", ip="192.0.2.50", ua="python-requests"
            ),
            click(c, 4, 1, at=t + 4, ip="203.0.113.10", ua=IPHONE, headers={"cf-ipcountry": "FR"}),
            click(c, 5, 0, at=t + 10, ip="198.51.100.5"),
            click(c, 5, 1, at=t + 10.5, ip="198.51.100.5"),
            conversion(ClickIds(b"docs").issue(first["event_id"]), 12.5, "o-1", at=t + 50, tag=tag),
            conversion(ClickIds(b"docs").issue(first["event_id"]), 12.5, "o-1", at=t + 51, tag=tag),
        ]

        for event in events:  # the clicks are this account's, as the edge would write them
            if event["type"] == "click":
                event["account"] = account_id

        async def write() -> None:
            redis = connect(redis_url)
            pipe = redis.pipeline(transaction=False)
            for event in events:
                pipe.xadd(STREAM_KEY, {"e": encode(event)})
            await pipe.execute()
            await redis.aclose()

        started = time.monotonic()
        asyncio.run(write())
        stats: dict[str, Any] = {}
        while time.monotonic() - started < 20:
            stats = client.get(f"/api/v1/campaigns/{campaign}/stats", headers=headers).json()
            if stats.get("conversions") == 1 and stats.get("bot_hits") == 3:
                break
            time.sleep(0.05)
        latency = time.monotonic() - started
        yield {
            "client": client,
            "headers": headers,
            "campaign": campaign,
            "stats": stats,
            "latency": latency,
            "ch": ch,
            "url": url,
        }
    if request.param == "http":
        analytics.close()


def test_stats_follow_the_definitions(world: dict[str, Any]) -> None:
    stats = world["stats"]
    print(f"\nclick to stats: {world['latency']:.2f} s")
    assert world["latency"] < 5
    assert (stats["recipients"], stats["messages"]) == (6, 6)
    assert stats["human_clicks"] == 4  # recipient 0 twice, 1 and 4
    assert stats["unique_clickers"] == 3
    assert stats["click_through_rate"] == 0.5
    assert (stats["views"], stats["preview_hits"]) == (2, 2)
    assert (stats["viewed_not_clicked"], stats["clicked_after_view"]) == (1, 1)
    assert stats["bot_hits"] == 3
    assert stats["bots_by_reason"] == {"bot:sibling-burst": 2, "bot:ua:python-requests": 1}
    assert (stats["conversions"], stats["conversion_value"]) == (1, 12.5)  # one order id
    assert stats["conversion_rate"] == round(1 / stats["unique_clickers"], 6)
    assert (stats["view_through_conversions"], stats["view_through_value"]) == (0, 0.0)
    assert [(link["conversions"], link["conversion_value"]) for link in stats["links"]] == [(1, 12.5), (0, 0.0)]
    assert stats["links"][0]["conversion_rate"] == round(1 / stats["links"][0]["unique_clickers"], 6)
    assert [(link["human_clicks"], link["unique_clickers"], link["views"]) for link in stats["links"]] == [
        (3, 2, 1),
        (1, 1, 1),
    ]
    assert stats["links"][0]["destination"] == "https://shop.example/a"
    assert sum(hour["human_clicks"] for hour in stats["timeline"]) == 4
    # Two pixel hits of one order: the repeat is stored but credited to no campaign.
    assert sum(hour["conversions"] for hour in stats["timeline"]) == 1


def test_stats_of_another_account_or_unknown_campaign(world: dict[str, Any], redis_url: str) -> None:
    client: TestClient = world["client"]

    async def other() -> str:
        redis = connect(redis_url)
        _, key = await accounts.create_account(redis, "other")
        await redis.aclose()
        return key.secret

    foreign = {"Authorization": f"Bearer {asyncio.run(other())}"}
    for path in ("stats", "clicks"):
        response = client.get(f"/api/v1/campaigns/{world['campaign']}/{path}", headers=foreign)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.get("/api/v1/campaigns/cmp_0000000000000000/stats", headers=world["headers"]).status_code == 404
    assert client.get(f"/api/v1/campaigns/{world['campaign']}/stats").status_code == 401


def test_clicks_export(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    url = f"/api/v1/campaigns/{world['campaign']}/clicks"
    rows = [orjson.loads(line) for line in client.get(url, headers=world["headers"]).text.splitlines()]
    assert len(rows) == 10  # 9 requests and the credited conversion (its repeat is credited to no campaign)
    assert rows == sorted(rows, key=lambda r: (r["time"], r["event_id"]))
    first = rows[0]
    assert first["phone"] == "+4915123456000" and first["class"] == "human" and first["country"] == "DE"
    assert first["browser"] == "Safari" and first["destination"] == "https://shop.example/a"
    assert {r["reason"] for r in rows if r["recipient_index"] == 5} == {"bot:sibling-burst"}
    csv_lines = client.get(url + "?format=csv", headers=world["headers"]).text.splitlines()
    assert csv_lines[0].startswith("time,event_id,type,phone,") and len(csv_lines) == 11
    assert client.get(url + "?format=xml", headers=world["headers"]).status_code == 400


def test_sql_console(world: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    query = f"SELECT class, count() AS n FROM shortcore.events FINAL WHERE campaign_id = '{world['campaign']}' "
    answer = client.post("/api/v1/sql", json={"query": query + "GROUP BY class ORDER BY class"}, headers=admin)
    assert answer.json() == {"columns": ["class", "n"], "rows": [["bot", 3], ["human", 5], ["preview", 2]]}
    table = client.post("/api/v1/sql", json={"query": "SELECT 1 AS one", "format": "table"}, headers=admin).text
    assert table.splitlines()[0] == "one" and table.endswith("(1 row)\n")
    for refused in (
        "INSERT INTO shortcore.campaigns (id) VALUES ('x')",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT 1 SETTINGS readonly = 0",
        "DROP TABLE shortcore.events",
    ):
        response = client.post("/api/v1/sql", json={"query": refused}, headers=admin)
        assert response.status_code == 400, refused
        assert response.json()["error"]["code"] == "invalid_query"
    assert client.post("/api/v1/sql", json={"query": "SELECT 1"}, headers=world["headers"]).status_code == 401


def test_cli_stats_and_sql_on_the_store(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    url = world["url"]
    assert main(["stats", world["campaign"], "--clickhouse-url", url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"unique clickers\s+3", out) and re.search(r"click-through rate\s+50\.00%", out)
    assert "bot:sibling-burst" in out and "https://shop.example/b" in out
    query = (
        f"SELECT reason, count() AS n FROM shortcore.events FINAL WHERE campaign_id = '{world['campaign']}' "
        "AND class = 'bot' GROUP BY reason ORDER BY reason"
    )
    assert main(["sql", query, "--clickhouse-url", url, "--format", "csv"]) == 0
    assert capsys.readouterr().out == "reason,n\nbot:sibling-burst,2\nbot:ua:python-requests,1\n"
    assert main(["sql", "DELETE FROM shortcore.events WHERE 1", "--clickhouse-url", url]) == 1
    assert "only SELECT" in capsys.readouterr().err
    # A SELECT the store's read-only session refuses (not our prefix check).
    assert main(["sql", "SELECT * FROM file('/etc/hostname', 'LineAsString')", "--clickhouse-url", url]) == 1
    assert "readonly" in capsys.readouterr().err.lower()


def _doc_queries() -> list[tuple[str, str]]:
    text = DOCS.read_text()
    found = re.findall(r"^### (\d+\. .+?)\n\n```sql\n(.*?)```", text, flags=re.M | re.S)
    return [(title, query) for title, query in found]


def test_docs_have_ten_queries_or_more() -> None:
    assert len(_doc_queries()) >= 10


@pytest.mark.parametrize(("title", "query"), _doc_queries(), ids=[t.split(".")[0] for t, _ in _doc_queries()])
def test_docs_query(world: dict[str, Any], title: str, query: str) -> None:
    result = world["ch"].query(query, parameters={"campaign": world["campaign"]})
    assert result.result_rows, f"{title}: no rows"
    named = list(result.named_results())
    if title.startswith("1."):
        assert sum(r["human_clicks"] for r in named) == 4
    if title.startswith("5."):
        assert (named[0]["messages"], named[0]["viewed"], named[0]["clicked"], named[0]["converted"]) == (6, 2, 3, 1)
    if title.startswith("7."):
        assert [r["phone"] for r in named] == ["+4915123456002"]
    if title.startswith("15."):  # a campaign of one text: one row, variant ''
        assert [(r["variant"], r["messages"], r["unique_clickers"]) for r in named] == [("", 6, 3)]
    if title.startswith("12."):
        assert named[0]["reason"] == "bot:sibling-burst" and named[0]["events"] == 2


def test_clicks_pages_follow_each_other(world: dict[str, Any]) -> None:
    from shortcore.stats import click_cursor, click_page

    seen: list[str] = []
    after = None
    while page := click_page(world["ch"], world["campaign"], after, limit=3):
        seen += [str(row["event_id"]) for row in page]
        after = click_cursor(page[-1])
    assert len(seen) == len(set(seen)) == 10  # 9 requests and the credited conversion
