"""Webhooks against a real HTTP receiver on loopback, and the outbox in a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from starlette.testclient import TestClient

from shortcore import accounts
from shortcore.analytics import DATABASE, AnalyticsStore, migrate
from shortcore.clickids import ClickIds
from shortcore.config import Settings
from shortcore.control import CAMPAIGN_COLUMNS, create_control_app
from shortcore.events import STREAM_KEY, EventIds
from shortcore.sink import EventSink, Row, SinkSettings
from shortcore.store import AnyRedis, connect
from shortcore.webhooks import (
    ACCOUNT_ENDPOINTS_KEY,
    ENDPOINTS_KEY,
    TargetGuard,
    TargetRefused,
    WebhookService,
    WebhookSettings,
    create_endpoint,
    rotate_secret,
    sign,
    verify,
)

from sinkdata import click, encode

IDS = EventIds()
CLICK_SECRET = b"webhook tests secret"
FAST = WebhookSettings(allow="127.0.0.1/32", timeout=0.3, retry_min=0.05, retry_max=0.4, max_age=60, poll=0.01)


# ---------------------------------------------------------------------------------------------
# A receiver


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP/1.1 server on loopback; ``answer(n)`` gives the status of the n-th request (from 0),
    or None to never answer."""

    answer: Callable[[int], int | None] = lambda n: 200
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = _Request()
                parser = httptools.HttpRequestParser(request)
                while not request.done:
                    data = await reader.read(65536)
                    if not data:
                        return
                    parser.feed_data(data)
                n = len(self.requests)
                self.requests.append(Received(time.monotonic(), request.headers, b"".join(request.body)))
                status = self.answer(n)
                if status is None:
                    await asyncio.sleep(3600)
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % status)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class _Request:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


# ---------------------------------------------------------------------------------------------
# Helpers


def click_row(account: str, klass: str = "human", **extra: Any) -> Row:
    event = {
        "v": 1, "event_id": IDS.new(time.time()), "time": int(time.time() * 1000), "type": "click", "outcome": "ok",
        "account": account, "campaign_id": "cmp_0000000000000001", "recipient_index": 0, "link_index": 0,
        "class": klass, "reason": "test", "browser": "Safari", "os": "iOS", "device": "mobile",
    }  # fmt: skip
    event["click_id"] = event["event_id"]  # as the edge writes a redirect's click
    return Row(b"0-1", orjson.dumps(event), event, dict(extra))


async def clean(redis: AnyRedis) -> None:
    keys = [k async for k in redis.scan_iter(match="sc:{wh}*")] + [k async for k in redis.scan_iter("sc:webhooks*")]
    if keys:
        await redis.delete(*keys)
    assert ENDPOINTS_KEY and ACCOUNT_ENDPOINTS_KEY


@contextlib.asynccontextmanager
async def running(redis_url: str, settings: WebhookSettings = FAST) -> AsyncIterator[tuple[WebhookService, AnyRedis]]:
    redis = connect(redis_url)
    await clean(redis)
    service = WebhookService(redis, None, settings, ClickIds(CLICK_SECRET))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service, redis
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await clean(redis)
        await redis.aclose()


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def _has_dead(service: WebhookService, account: str) -> bool:
    return bool(await service.sender.outbox.dead(account))


async def _none_pending(service: WebhookService) -> bool:
    return await service.sender.outbox.pending() == 0


def run(coro: Awaitable[None]) -> None:
    async def main() -> None:
        await coro

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Delivery


def test_signed_delivery(redis_url: str) -> None:
    async def go() -> None:
        receiver = Receiver()
        await receiver.start()
        async with running(redis_url) as (service, redis):
            endpoint = await create_endpoint(redis, service.sender.guard, "acc_1", receiver.url, ["click"])
            rows = [click_row("acc_1", _country="DE"), click_row("acc_1", "bot"), click_row("acc_2")]
            await service.after_insert(rows)
            await until(lambda: len(receiver.requests) == 1)
            await until(lambda: service.sender.status.delivered == 1)
            got = receiver.requests[0]
            assert verify(endpoint.secret, got.headers["shortcore-signature"], got.body)
            # The documented recipe, by hand.
            t, v1 = (part.split("=", 1)[1] for part in got.headers["shortcore-signature"].split(","))
            mac = hmac.new(endpoint.secret.encode(), f"{t}.".encode() + got.body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(mac, v1) and abs(time.time() - int(t)) < 5
            assert not verify(endpoint.secret, got.headers["shortcore-signature"], got.body + b" ")
            assert not verify("whsec_other", got.headers["shortcore-signature"], got.body)
            assert not verify(endpoint.secret, got.headers["shortcore-signature"], got.body, now=int(t) + 301)
            body = orjson.loads(got.body)
            assert body["id"] == rows[0].event["event_id"] and body["type"] == "click"
            assert (body["class"], body["browser"], body["os"], body["device"]) == ("human", "Safari", "iOS", "mobile")
            assert body["country"] == "DE" and body["campaign_id"] == "cmp_0000000000000001"
            assert body["link"] == {"index": 0, "url": None}
            # The click id as signed for the landing page: it names this click, and only with the secret.
            assert body["click_id"] != rows[0].event["event_id"]
            assert ClickIds(CLICK_SECRET).event_id(body["click_id"]) == rows[0].event["event_id"]
            assert ClickIds(b"another deployment").event_id(body["click_id"]) is None
            assert got.headers["content-type"] == "application/json"
            await until(lambda: _none_pending(service))
        await receiver.stop()

    run(go())


def test_500_then_200_and_backoff_order(redis_url: str) -> None:
    async def go() -> None:
        receiver = Receiver(answer=lambda n: 500 if n < 4 else 200)
        await receiver.start()
        async with running(redis_url) as (service, redis):
            await create_endpoint(redis, service.sender.guard, "acc_1", receiver.url)
            row = click_row("acc_1")
            await service.after_insert([row])
            await until(lambda: service.sender.status.delivered == 1)
            assert len(receiver.requests) == 5
            assert [r.headers["shortcore-attempt"] for r in receiver.requests] == ["1", "2", "3", "4", "5"]
            assert len({r.headers["shortcore-delivery"] for r in receiver.requests}) == 1
            assert {orjson.loads(r.body)["id"] for r in receiver.requests} == {row.event["event_id"]}
            # Exponential backoff with jitter: each wait is at least the one before.
            gaps = [b.at - a.at for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
            assert gaps[0] >= 0.02
            assert all(later >= earlier * 0.9 for earlier, later in itertools.pairwise(gaps)), gaps
        await receiver.stop()

    run(go())


def test_hanging_receiver_times_out_and_is_retried(redis_url: str) -> None:
    async def go() -> None:
        receiver = Receiver(answer=lambda n: None if n == 0 else 200)
        await receiver.start()
        async with running(redis_url) as (service, redis):
            await create_endpoint(redis, service.sender.guard, "acc_1", receiver.url)
            started = time.monotonic()
            await service.after_insert([click_row("acc_1")])
            await until(lambda: service.sender.status.delivered == 1)
            assert time.monotonic() - started >= FAST.timeout
            assert service.sender.status.failed_attempts == 1
            assert len(receiver.requests) == 2
        await receiver.stop()

    run(go())


def test_receiver_down_for_a_while(redis_url: str) -> None:
    async def go() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        receiver = Receiver(port=port)
        async with running(redis_url) as (service, redis):
            await create_endpoint(redis, service.sender.guard, "acc_1", receiver.url)
            await service.after_insert([click_row("acc_1"), click_row("acc_1")])
            await until(lambda: service.sender.status.failed_attempts >= 4)
            assert service.sender.status.delivered == 0
            await receiver.start()
            await until(lambda: service.sender.status.delivered == 2)
            assert len({orjson.loads(r.body)["id"] for r in receiver.requests}) == 2
        await receiver.stop()

    run(go())


def test_dead_letters_and_replay(redis_url: str) -> None:
    async def go() -> None:
        healthy = False
        receiver = Receiver(answer=lambda n: 200 if healthy else 503)
        await receiver.start()
        settings = WebhookSettings(
            allow="127.0.0.1", timeout=0.3, retry_min=0.05, retry_max=0.1, max_age=0.4, poll=0.01
        )
        async with running(redis_url, settings) as (service, redis):
            await create_endpoint(redis, service.sender.guard, "acc_1", receiver.url)
            row = click_row("acc_1")
            await service.after_insert([row])
            await until(lambda: service.sender.status.dead_lettered == 1)
            # Dead letters are written to Redis in batches, a moment after they are counted.
            await until(lambda: _has_dead(service, "acc_1"))
            dead = await service.sender.outbox.dead("acc_1")
            assert len(dead) == 1 and dead[0]["event_ids"] == [row.event["event_id"]]
            assert dead[0]["last_status"] == 503 and dead[0]["attempts"] >= 2
            assert await service.sender.outbox.dead("acc_2") == []
            await until(lambda: _none_pending(service))
            healthy = True
            assert await service.sender.outbox.replay("acc_1", None) == 1
            service.sender.wake()
            await until(lambda: service.sender.status.delivered == 1)
            assert await service.sender.outbox.dead("acc_1") == []
        await receiver.stop()

    run(go())


def test_batching_and_filters(redis_url: str) -> None:
    async def go() -> None:
        batched, conversions_only = Receiver(), Receiver()
        await batched.start()
        await conversions_only.start()
        async with running(redis_url) as (service, redis):
            guard = service.sender.guard
            await create_endpoint(redis, guard, "acc_1", batched.url, ["click", "bot"], batch_size=3)
            await create_endpoint(redis, guard, "acc_1", conversions_only.url, ["conversion"])
            rows = [click_row("acc_1") for _ in range(6)] + [click_row("acc_1", "preview")]
            rows.append(click_row("acc_1", "human", _class="bot", _reason="bot:sweep"))
            await service.after_insert(rows)
            await until(lambda: service.sender.status.delivered == 3)
            sizes = sorted(len(orjson.loads(r.body)["events"]) for r in batched.requests)
            assert sizes == [1, 3, 3]
            kinds = [e["type"] for r in batched.requests for e in orjson.loads(r.body)["events"]]
            assert kinds.count("bot") == 1 and "view" not in kinds
            # The same batch again (a sink replay): at least once, with the same event ids to
            # deduplicate on.
            first = {e["id"] for r in batched.requests for e in orjson.loads(r.body)["events"]}
            await service.after_insert(rows)
            await asyncio.sleep(0.3)
            assert 3 <= len(batched.requests) <= 6
            assert {e["id"] for r in batched.requests for e in orjson.loads(r.body)["events"]} == first
            assert conversions_only.requests == []
        await batched.stop()
        await conversions_only.stop()

    run(go())


# ---------------------------------------------------------------------------------------------
# Targets


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.1", "172.16.0.1", "169.254.169.254", "::1", "0.0.0.0",
     "fe80::1", "fd00::1", "100.64.0.1", "::ffff:127.0.0.1", "224.0.0.1"],
)  # fmt: skip
def test_non_public_targets_are_refused(host: str) -> None:
    async def go() -> None:
        with pytest.raises(TargetRefused):
            await TargetGuard("").resolve(host, 80)
        allowed = TargetGuard("0.0.0.0/0, ::/0")
        assert await allowed.resolve(host, 80)

    run(go())


def test_allow_list() -> None:
    guard = TargetGuard("127.0.0.1/32,hooks.internal")
    assert guard.address_allowed("127.0.0.1")
    assert not guard.address_allowed("127.0.0.2")
    assert not guard.address_allowed("10.0.0.1")
    assert guard.address_allowed("93.184.216.34")
    assert "hooks.internal" in guard.hosts


# ---------------------------------------------------------------------------------------------
# The API


@pytest.fixture(scope="module")
def api(redis_url: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    migrate(chdb_client)
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("data")), redis_url=redis_url, secret="hooks")
    app = create_control_app(settings, analytics=AnalyticsStore(chdb_client), webhook_settings=FAST)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def key(redis_url: str) -> str:
    async def make() -> str:
        redis = connect(redis_url)
        try:
            _, key = await accounts.create_account(redis, "hooks " + secrets.token_hex(2))
            return key.secret
        finally:
            await redis.aclose()

    return asyncio.run(make())


def test_webhook_api(api: TestClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    created = api.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["conversion"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["conversion"] and hook["batch_size"] == 1
    listed = api.get("/api/v1/webhooks", headers=headers).json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert api.get("/api/v1/webhooks/dead-letters", headers=headers).json() == {"dead_letters": []}
    replay = api.post("/api/v1/webhooks/dead-letters/replay", json={}, headers=headers)
    assert replay.json() == {"replayed": 0}
    assert api.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers).status_code == 204
    assert api.delete(f"/api/v1/webhooks/{hook['id']}", headers=headers).status_code == 404
    assert api.get("/api/v1/webhooks", headers=headers).json() == {"webhooks": []}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "http://10.0.0.1/hook"}, "target_refused"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "target_refused"),
        ({"url": "http://[::1]:8080/"}, "target_refused"),
        ({"url": "ftp://example.com/"}, "invalid_field"),
        ({"url": "http://user:pw@127.0.0.1/"}, "invalid_field"),
        ({"url": 12}, "invalid_field"),
        ({}, "invalid_field"),
        ({"url": "http://127.0.0.1/", "events": ["clicks"]}, "invalid_field"),
        ({"url": "http://127.0.0.1/", "events": []}, "invalid_field"),
        ({"url": "http://127.0.0.1/", "batch_size": 0}, "invalid_field"),
        ({"url": "http://127.0.0.1/", "batch_size": "10"}, "invalid_field"),
        ({"url": "http://127.0.0.1/", "secret": "mine"}, "unknown_field"),
    ],
)
def test_webhook_api_bad_input(api: TestClient, key: str, body: dict[str, Any], code: str) -> None:
    response = api.post("/api/v1/webhooks", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_dead_letter_api_bad_input(api: TestClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/v1/webhooks/dead-letters?limit=0", headers=headers).status_code == 400
    assert api.post("/api/v1/webhooks/dead-letters/replay", json={"ids": "all"}, headers=headers).status_code == 422
    assert api.get("/api/v1/webhooks").status_code == 401


# ---------------------------------------------------------------------------------------------
# Secret rotation


def _v1s(header: str) -> list[str]:
    return [part.split("=", 1)[1] for part in header.split(",") if part.startswith("v1=")]


def test_rotation_signs_with_both_secrets_during_the_grace_period(redis_url: str) -> None:
    async def go() -> None:
        receiver = Receiver()
        await receiver.start()
        async with running(redis_url) as (service, redis):
            guard = service.sender.guard
            old = await create_endpoint(redis, guard, "acc_1", receiver.url, ["click"])
            new = await rotate_secret(redis, "acc_1", old.id, 3600)
            assert new is not None and new.secret != old.secret and new.previous_secret == old.secret
            assert await rotate_secret(redis, "acc_2", old.id, 3600) is None  # not acc_2's
            await service.sender.endpoints(force=True)
            await service.after_insert([click_row("acc_1")])
            await until(lambda: service.sender.status.delivered == 1)
            got = receiver.requests[0]
            header = got.headers["shortcore-signature"]
            assert len(_v1s(header)) == 2
            # A receiver on either secret accepts it: nothing is lost while it switches.
            assert verify(new.secret, header, got.body) and verify(old.secret, header, got.body)
            assert not verify("whsec_other", header, got.body)
            # A short grace period runs out: then only the newest secret signs.
            newest = await rotate_secret(redis, "acc_1", old.id, 0.2)
            assert newest is not None
            await asyncio.sleep(0.3)
            await service.sender.endpoints(force=True)
            await service.after_insert([click_row("acc_1")])
            await until(lambda: service.sender.status.delivered == 2)
            got = receiver.requests[1]
            header = got.headers["shortcore-signature"]
            assert len(_v1s(header)) == 1 and verify(newest.secret, header, got.body)
            assert not verify(new.secret, header, got.body) and not verify(old.secret, header, got.body)
        await receiver.stop()

    run(go())


def test_rotate_secret_api(api: TestClient, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    hook = api.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=headers).json()
    assert hook["previous_secret_expires_at"] is None
    rotated = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=headers)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["id"] == hook["id"] and body["secret"].startswith("whsec_") and body["secret"] != hook["secret"]
    assert abs(body["previous_secret_expires_at"] - (time.time() + 86_400)) < 60
    listed = api.get("/api/v1/webhooks", headers=headers).json()["webhooks"][0]
    assert "secret" not in listed and listed["previous_secret_expires_at"] == body["previous_secret_expires_at"]
    now = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_seconds": 0}, headers=headers)
    assert now.status_code == 200 and now.json()["previous_secret_expires_at"] is None
    for bad in ({"grace_seconds": -1}, {"grace_seconds": "60"}, {"grace_seconds": 10**9}, {"grace": 60}):
        response = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json=bad, headers=headers)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] in ("invalid_field", "unknown_field")
    bad_json = api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", content=b"{", headers=headers)
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert api.post("/api/v1/webhooks/wh_0000000000000000/rotate-secret", headers=headers).status_code == 404
    assert api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret").status_code == 401


# ---------------------------------------------------------------------------------------------
# Reclassified events, through a real sink


def test_reclassified_click_is_sent_again(redis_url: str, chdb_client: Client) -> None:
    migrate(chdb_client)
    analytics = AnalyticsStore(chdb_client)
    account, campaign = "acc_" + secrets.token_hex(8), "cmp_" + secrets.token_hex(8)
    now = dt.datetime.now(dt.UTC)
    chdb_client.insert(
        f"{DATABASE}.campaigns",
        [[campaign, account, "two links", "", "ul.example", 0, 4, 2, ["https://a.example/", "https://b.example/"],
          {}, True, now, None, now, 1, ""]],
        column_names=list(CAMPAIGN_COLUMNS),
    )  # fmt: skip
    t = time.time() - 10
    first = click(campaign, 0, 0, at=t, account=account)
    # Both links of the message within the sibling window: a link scanner, not a person.
    second = click(campaign, 0, 1, at=t + 1, account=account)

    async def go() -> None:
        clicks, bots = Receiver(), Receiver()
        await clicks.start()
        await bots.start()
        async with running(redis_url) as (service, redis):
            await redis.delete(STREAM_KEY)
            await create_endpoint(redis, service.sender.guard, account, clicks.url, ["click"])
            await create_endpoint(redis, service.sender.guard, account, bots.url, ["bot"])
            sink = EventSink(redis, analytics, SinkSettings(batch_wait=0.05), after_insert=service.after_insert)
            stop = asyncio.Event()
            task = asyncio.create_task(sink.run(stop))
            try:
                await redis.xadd(STREAM_KEY, {"e": encode(first)})
                await until(lambda: len(clicks.requests) == 1, timeout=20)
                await redis.xadd(STREAM_KEY, {"e": encode(second)})
                await until(lambda: len(clicks.requests) == 2 and len(bots.requests) == 2, timeout=20)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
                sink.close()
        await clicks.stop()
        await bots.stop()
        as_click, revised = (orjson.loads(r.body) for r in clicks.requests)
        assert (as_click["id"], as_click["type"], as_click["revision"], as_click["reclassified"]) == (
            first["event_id"], "click", 0, False,
        )  # fmt: skip
        assert (revised["id"], revised["type"], revised["class"], revised["reason"]) == (
            first["event_id"], "bot", "bot", "bot:sibling-burst",
        )  # fmt: skip
        assert revised["revision"] == 1 and revised["reclassified"] is True
        assert revised["previous"] == {"type": "click", "class": "human", "reason": first["reason"]}
        # The bot endpoint never had it as a click; it gets both as bots, the first as a revision.
        got = sorted((orjson.loads(r.body) for r in bots.requests), key=lambda b: b["time"])
        assert [(b["id"], b["type"], b["reclassified"]) for b in got] == [
            (first["event_id"], "bot", True), (second["event_id"], "bot", False),
        ]  # fmt: skip
        assert len({r.headers["shortcore-delivery"] for r in clicks.requests}) == 2

    run(go())


def test_the_documented_recipe_accepts_either_secret() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "conversions.md").read_text()
    recipe = text[text.index("### Verifying the signature") :]
    code = recipe[recipe.index("```python\n") + 10 : recipe.index("```", recipe.index("```python\n") + 10)]
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the receivers' snippet, as published
    body, now = b'{"id": "x"}', int(time.time())
    header = sign("whsec_new", now, body, "whsec_old")
    assert namespace["verify"]("whsec_new", header, body) and namespace["verify"]("whsec_old", header, body)
    assert not namespace["verify"]("whsec_other", header, body)
    assert not namespace["verify"]("whsec_new", sign("whsec_new", now - 400, body), body)
    assert namespace["verify"]("whsec_new", sign("whsec_new", now, body), body)
