from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from edge_helpers import BROWSER_HEADERS, SECRET, edge

from shortcore import routing
from shortcore.analytics import AnalyticsStore, migrate
from shortcore.classify import CLASSIFIER_HEADERS
from shortcore.clickids import ClickIds, is_click_id
from shortcore.edge import PIXEL_GIF
from shortcore.events import EVENT_VERSION, STREAM_KEY
from shortcore.sink import EventSink, SinkSettings
from shortcore.store import connect
from shortcore.tokens import TokenCodec

CODEC = TokenCodec(SECRET.encode(), 7)
CLICK_IDS = ClickIds(SECRET.encode())


async def events_by_id(state: Any) -> dict[str, dict[str, Any]]:
    entries = await state.redis.xrange(STREAM_KEY)
    found = {}
    for _, fields in entries:
        # The stream is the test run's: other tests leave malformed entries in it on purpose.
        try:
            event = orjson.loads(fields.get(b"e", b""))
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and {"event_id", "domain", "outcome", "type"} <= event.keys():
            found[event["event_id"]] = event
    return found


def clicked(location: str) -> str:
    """The event id of the click a redirect's ``Location`` names."""
    event_id = CLICK_IDS.event_id(parse_qs(urlsplit(location).query)["sc_click"][0])
    assert event_id is not None
    return event_id


async def campaign(state: Any, name: str, **kwargs: Any) -> routing.Campaign:
    defaults: dict[str, Any] = {
        "account": "acc-1",
        "domain": "ul.example",
        "recipients": 4,
        "destinations": ["https://shop.example/p?x=1#top", "https://shop.example/q"],
        "utm": {"source": "sms", "campaign": "spring"},
        "sent_at": time.time() - 3600,
    }
    defaults.update(kwargs)
    return await routing.register_campaign(state.redis, id=name, **defaults)


def test_redirect_records_then_answers_302(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path, client_ip="203.0.113.7") as (state, client):
            c = await campaign(state, "edge-ok")
            token = CODEC.encode(c.seq(2, 0))
            r = await client.get(f"/{token}", headers=BROWSER_HEADERS)
            assert r.status_code == 302
            location = r.headers["location"]
            parts = urlsplit(location)
            assert location.startswith("https://shop.example/p?x=1&utm_source=sms&utm_campaign=spring&sc_click=")
            assert parts.fragment == "top"
            click = parse_qs(parts.query)["sc_click"][0]
            cookie = r.headers["set-cookie"]
            assert cookie.startswith(f"sc_click={click};")
            for attribute in ("Secure", "HttpOnly", "SameSite=None", f"Max-Age={30 * 86400}"):
                assert attribute in cookie
            # The click id handed out is signed; the event keeps the bare event id it names.
            assert is_click_id(click) and len(location) - len(location.split("sc_click=")[0]) < 70
            event_id = CLICK_IDS.event_id(click)
            assert event_id is not None
            event = (await events_by_id(state))[event_id]
            assert event["v"] == EVENT_VERSION and event["type"] == "click" and event["outcome"] == "ok"
            assert (event["campaign_id"], event["account"], event["recipient_index"], event["link_index"]) == (
                "edge-ok", "acc-1", 2, 0,
            )  # fmt: skip
            assert (event["class"], event["reason"], event["token"]) == ("human", "human", token)
            assert event["ip"] == "203.0.113.7"
            assert event["user_agent"] == BROWSER_HEADERS["user-agent"]
            assert event["headers"]["accept-language"] == "en-GB"
            assert set(event["headers"]) <= set(CLASSIFIER_HEADERS)
            assert event["method"] == "GET" and event["click_id"] == event_id

    asyncio.run(main())


def test_head_answers_the_same_and_is_a_bot(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            c = await campaign(state, "edge-head", click_param=False, utm=None)
            token = CODEC.encode(c.seq(0, 1))
            r = await client.head(f"/{token}", headers=BROWSER_HEADERS)
            g = await client.get(f"/{token}", headers=BROWSER_HEADERS)
            assert r.status_code == g.status_code == 302
            assert r.headers["location"] == g.headers["location"] == "https://shop.example/q"
            events = [e for e in (await events_by_id(state)).values() if e["campaign_id"] == "edge-head"]
            assert sorted((e["method"], e["class"], e["reason"]) for e in events) == [
                ("GET", "human", "human"),
                ("HEAD", "bot", "bot:head"),
            ]

    asyncio.run(main())


def test_previews_and_bots_are_classified(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            c = await campaign(state, "edge-classes")
            token = CODEC.encode(c.seq(1, 1))
            for ua in ("WhatsApp/2.23.20.0 A", "python-requests/2.31", "facebookexternalhit/1.1"):
                assert (await client.get(f"/{token}", headers={"user-agent": ua})).status_code == 302
            events = [e for e in (await events_by_id(state)).values() if e["campaign_id"] == "edge-classes"]
            assert sorted(e["class"] for e in events) == ["bot", "preview", "preview"]

    asyncio.run(main())


def test_too_soon_after_sending_is_a_bot(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            c = await campaign(state, "edge-soon", sent_at=time.time())
            await client.get(f"/{CODEC.encode(c.seq(0, 0))}", headers=BROWSER_HEADERS)
            events = [e for e in (await events_by_id(state)).values() if e["campaign_id"] == "edge-soon"]
            assert [e["reason"] for e in events] == ["bot:too-soon"]

    asyncio.run(main())


@pytest.mark.parametrize("fallback", [None, "https://brand.example/home"])
def test_unknown_malformed_and_expired(redis_url: str, tmp_path: Path, fallback: str | None) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            host = f"short{0 if fallback is None else 1}.example"
            await routing.register_domain(state.redis, host, fallback_url=fallback)
            c = await campaign(state, f"edge-expired-{host}", domain=host, expires_at=time.time() - 1)
            paths = {
                "expired": f"/{CODEC.encode(c.seq(0, 0))}",
                "unknown": f"/{CODEC.encode(CODEC.max_seq - 5)}",
                "malformed": "/not-a-token!",
            }
            for outcome, path in paths.items():
                for method in ("GET", "HEAD"):
                    r = await client.request(method, path, headers={**BROWSER_HEADERS, "host": host})
                    if fallback is None:
                        assert r.status_code == 404, outcome
                        assert "location" not in r.headers
                        if method == "GET":
                            assert "not exist" in r.text
                    else:
                        assert r.status_code == 302, outcome
                        assert r.headers["location"] == fallback
                    assert "set-cookie" not in r.headers
            outcomes = [e["outcome"] for e in (await events_by_id(state)).values() if e["domain"] == host]
            assert sorted(outcomes) == sorted(["expired", "unknown", "malformed"] * 2)

    asyncio.run(main())


def test_token_of_another_length_is_unknown(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            c = await campaign(state, "edge-len")
            other = TokenCodec(SECRET.encode(), 8).encode(c.seq(0, 0))
            assert (await client.get(f"/{other}")).status_code == 404

    asyncio.run(main())


def test_unknown_tokens_are_rate_limited_per_client(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path, unknown_token_limit=5) as (state, client):
            c = await campaign(state, "edge-limit")
            statuses = [(await client.get(f"/{CODEC.encode(CODEC.max_seq - i)}")).status_code for i in range(8)]
            assert statuses[:5] == [404] * 5 and statuses[5:] == [429] * 3
            # Now even a good token is refused to this client: probing learns nothing.
            assert (await client.get(f"/{CODEC.encode(c.seq(0, 0))}")).status_code == 429
            limited = [e for e in (await events_by_id(state)).values() if e["outcome"] == "limited"]
            assert len(limited) == 4
        async with edge(redis_url, tmp_path, client_ip="198.51.100.1", unknown_token_limit=5) as (state, client):
            assert (await client.get(f"/{CODEC.encode(c.seq(0, 0))}")).status_code == 302

    asyncio.run(main())


def test_unknown_token_limit_is_shared_by_workers(redis_url: str, tmp_path: Path) -> None:
    """Two edge apps on one Redis (two workers, or two nodes) enforce one limit between them."""

    async def main() -> None:
        ip = f"198.51.100.{uuid.uuid4().int % 200 + 20}"
        async with (
            edge(redis_url, tmp_path / "a", client_ip=ip, unknown_token_limit=6) as (_, a),
            edge(redis_url, tmp_path / "b", client_ip=ip, unknown_token_limit=6) as (_, b),
        ):
            unknown = [f"/{CODEC.encode(CODEC.max_seq - 1000 - i)}" for i in range(10)]
            # Three strikes on each worker: neither worker's own bucket is empty, the shared count is.
            for path in unknown[:3]:
                assert (await a.get(path)).status_code == 404
            for path in unknown[3:6]:
                assert (await b.get(path)).status_code == 404
            assert (await b.get(unknown[6])).status_code == 429
            # The other worker learns it from its next strike at the latest.
            statuses = [(await a.get(path)).status_code for path in unknown[7:]]
            assert statuses in ([429, 429, 429], [404, 429, 429])

    asyncio.run(main())


def test_trusted_proxy_header_only_when_configured(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        forwarded = {"x-forwarded-for": "192.0.2.1, 198.51.100.9", **BROWSER_HEADERS}
        async with edge(redis_url, tmp_path, client_ip="203.0.113.7") as (state, client):
            c = await campaign(state, "edge-proxy")
            token = CODEC.encode(c.seq(0, 0))
            r = await client.get(f"/{token}", headers=forwarded)
            plain = (await events_by_id(state))[clicked(r.headers["location"])]
            assert plain["ip"] == "203.0.113.7"
        async with edge(redis_url, tmp_path, trusted_proxy_header="X-Forwarded-For") as (state, client):
            r = await client.get(f"/{token}", headers=forwarded)
            proxied = (await events_by_id(state))[clicked(r.headers["location"])]
            assert proxied["ip"] == "198.51.100.9"
            r = await client.get(f"/{token}", headers={**BROWSER_HEADERS, "x-forwarded-for": "garbage\x7f"})
            assert r.status_code == 302

    asyncio.run(main())


def test_pixel_always_answers_the_gif(redis_url: str, tmp_path: Path) -> None:
    cookie = f"pixel-test-{uuid.uuid4().hex}"

    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            queries = [
                "?cid=signup&event=purchase&value=19.90&currency=EUR&order_id=A-1&click=abc",
                "?cid=x&value=not-a-number",
                "?value=1e999&cid=%FF%FE",
                "",
                "?" + "a=1&" * 500,
                "?cid=" + "z" * 5000,
            ]
            for query in queries:
                r = await client.get(f"/c_t{query}", headers={"cookie": f"sc_click={cookie}; other=1"})
                assert r.status_code == 200
                assert r.content == PIXEL_GIF and len(r.content) == 43
                assert r.headers["content-type"] == "image/gif"
                assert "no-store" in r.headers["cache-control"]
            # The stream is the test run's: keep this test's conversions, known by their cookie.
            conversions = [
                e
                for e in (await events_by_id(state)).values()
                if e["type"] == "conversion" and e.get("click_cookie") == cookie
            ]
            assert len(conversions) == len(queries)
            first = next(e for e in conversions if e["order_id"] == "A-1")
            assert (first["conversion_tag"], first["event_name"], first["value"], first["currency"]) == (
                "signup", "purchase", 19.9, "EUR",
            )  # fmt: skip
            assert first["click_id"] == "abc" and first["click_cookie"] == cookie
            bad = next(e for e in conversions if e["value_raw"] == "not-a-number")
            assert bad["value"] is None and bad["click_id"] == cookie

    asyncio.run(main())


def test_healthz_and_metrics(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            c = await campaign(state, "edge-metrics")
            await client.get(f"/{CODEC.encode(c.seq(0, 0))}", headers=BROWSER_HEADERS)
            health = (await client.get("/healthz")).json()
            assert health["status"] == "ok" and health["store"]["up"] is True
            assert health["events"]["committed"] >= 1
            text = (await client.get("/metrics")).text
            assert 'shortcore_edge_requests_total{class="human",outcome="ok",type="click"} 1.0' in text
            assert "shortcore_events_committed_total" in text

    asyncio.run(main())


def _gauge(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_sink_backlog_in_healthz_and_metrics(redis_url: str, tmp_path: Path, chdb_client: Client) -> None:
    """With the sink stopped the edge shows what waits and for how long; once a sink has run, 0."""

    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            await state.redis.delete(STREAM_KEY)
            migrate(chdb_client)
            analytics = AnalyticsStore(chdb_client)
            # A sink that ran once and stopped: its group exists, its position is the stream's end.
            await EventSink(state.redis, analytics).ensure_group()
            c = await campaign(state, "edge-backlog")
            for recipient in range(3):
                r = await client.get(f"/{CODEC.encode(c.seq(recipient, 0))}", headers=BROWSER_HEADERS)
                assert r.status_code == 302
            await asyncio.sleep(0.3)  # the oldest event is at least this old; and the cache expires
            await asyncio.sleep(max(0.0, state.backlog.max_age - 0.3))
            health = (await client.get("/healthz")).json()
            assert health["sink"]["known"] is True
            assert health["sink"]["backlog"] == 3
            assert 0.3 <= health["sink"]["oldest_unsent_seconds"] < 30
            text = (await client.get("/metrics")).text
            assert _gauge(text, "shortcore_sink_backlog") == 3
            assert _gauge(text, "shortcore_sink_oldest_unsent_seconds") >= 0.3
            assert _gauge(text, "shortcore_sink_backlog_known") == 1

            # The sink's own client: it blocks on the stream longer than the edge's timeout.
            sink_redis = connect(redis_url)
            sink = EventSink(sink_redis, analytics, SinkSettings(batch_wait=0.01))
            stop = asyncio.Event()
            task = asyncio.create_task(sink.run(stop))
            try:
                deadline = time.monotonic() + 30
                while sink.status.inserted < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    if task.done():
                        task.result()
            finally:
                stop.set()
                await task
                sink.close()
                await sink_redis.aclose()
                analytics._executor.shutdown(wait=True)  # the session owns the client
            await asyncio.sleep(state.backlog.max_age)
            health = (await client.get("/healthz")).json()
            assert health["sink"] == {"known": True, "backlog": 0, "oldest_unsent_seconds": 0.0}
            text = (await client.get("/metrics")).text
            assert _gauge(text, "shortcore_sink_backlog") == 0
            assert _gauge(text, "shortcore_sink_oldest_unsent_seconds") == 0

    asyncio.run(main())


def test_sink_backlog_unknown_while_redis_is_down(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            state.backlog.redis = connect("redis://127.0.0.1:1", socket_connect_timeout=0.2)
            health = (await client.get("/healthz")).json()
            assert health["sink"] == {"known": False, "backlog": None, "oldest_unsent_seconds": None}
            assert _gauge((await client.get("/metrics")).text, "shortcore_sink_backlog_known") == 0
            await state.backlog.redis.aclose()

    asyncio.run(main())


def test_other_methods_are_405_and_recorded(redis_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(redis_url, tmp_path) as (state, client):
            r = await client.post("/abcdefg", content=b"x")
            assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
            assert any(e["outcome"] == "method" for e in (await events_by_id(state)).values())

    asyncio.run(main())
