from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from shortcore import accounts, routing
from shortcore.analytics import DATABASE, AnalyticsStore, migrate
from shortcore.config import Settings
from shortcore.control import control_routes, create_control_app
from shortcore.openapi import openapi_document
from shortcore.sink import SinkSettings
from shortcore.store import connect
from shortcore.tokens import TokenCodec

SECRET = "control test secret"
TEXT = "Spring sale! https://shop.example/spring?id=1 and stores www.shop.example/stores"


def _new_account(url: str, name: str) -> str:
    return accounts.new_api_key(url, name, default_region="DE")


@pytest.fixture(scope="module")
def app_client(redis_url: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    migrate(chdb_client)
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("data")),
        redis_url=redis_url,
        secret=SECRET,
        base_url="https://ul.example",
    )
    analytics = AnalyticsStore(chdb_client)
    app = create_control_app(settings, analytics=analytics, max_upload_bytes=2 * 1024 * 1024)
    with TestClient(app) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def key(redis_url: str) -> str:
    return _new_account(redis_url, "test account")


def create(client: TestClient, key: str, **fields: Any) -> Any:
    body = {"name": "spring", "text": TEXT, "recipients": ["+4915123456789", "0151 23456780"], **fields}
    return client.post("/api/v1/campaigns", json=body, headers=auth(key))


def test_create_campaign_and_read_messages(app_client: TestClient, key: str) -> None:
    response = create(app_client, key, recipients=["+4915123456789", "0151 23456780", "nope", "+49 151 23456789"])
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["recipients"], created["invalid"], created["duplicates"], created["links"]) == (2, 1, 1, 2)
    assert created["errors"]["invalid"] == [{"line": 3, "value": "nope", "reason": "not a phone number"}]
    assert created["errors"]["duplicates"][0]["reason"] == "duplicate of line 1"
    assert created["domain"] == "ul.example"

    rows = app_client.get(created["messages_url"], headers=auth(key))
    assert rows.status_code == 200
    lines = [orjson.loads(line) for line in rows.text.splitlines()]
    assert [row["phone"] for row in lines] == ["+4915123456789", "+4915123456780"]
    codec = TokenCodec(SECRET.encode())
    seqs = []
    for row in lines:
        assert row["encoding"] == "GSM-7" and row["segments"] == 1
        for url in row["links"]:
            assert url.startswith("https://ul.example/") and url in row["text"]
            seqs.append(codec.decode(url.rsplit("/", 1)[1]))
    # Recipient r's link l is seq_start + r * links + l: the edge routes a token from that alone.
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    csv_rows = app_client.get(created["messages_url"] + "?format=csv", headers=auth(key)).text.splitlines()
    assert csv_rows[0] == "phone,id,text,encoding,characters,segments,segments_before,links,variant"
    assert len(csv_rows) == 3
    listed = app_client.get("/api/v1/campaigns", headers=auth(key)).json()["campaigns"]
    assert created["id"] in [c["id"] for c in listed]


def test_csv_upload(app_client: TestClient, key: str) -> None:
    csv = "phone,id,first_name\n" + "".join(f"+49151{i:08d},r{i},N{i}\n" for i in range(500)) + "bad,x,y\n"
    response = app_client.post(
        "/api/v1/campaigns",
        data={"name": "upload", "text": TEXT, "scheme": "drop", "utm": "true"},
        files={"recipients": ("list.csv", csv.encode(), "text/csv")},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["recipients"], created["invalid"]) == (500, 1)
    assert created["errors"]["invalid"][0]["line"] == 502
    campaign = app_client.get(f"/api/v1/campaigns/{created['id']}", headers=auth(key)).json()
    assert campaign["utm"]["utm_medium"] == "sms"
    first = orjson.loads(app_client.get(created["messages_url"], headers=auth(key)).text.splitlines()[0])
    assert "https://" not in first["text"].split("!", 1)[1]  # schemes dropped from short links


def test_csv_upload_reports_rows_and_broken_files_by_line(app_client: TestClient, key: str) -> None:
    def upload(csv: bytes) -> Any:
        return app_client.post(
            "/api/v1/campaigns", data={"text": TEXT}, files={"recipients": ("l.csv", csv)}, headers=auth(key)
        )

    rows = b'phone,note\r\n+4915123456789,"two\r\nlines"\r\n+4915123456789,dup\r\n+4915123456780,'
    created = upload(rows + b"x" * 1_100_000 + b"\r\n+4915123456781,ok").json()
    assert created["recipients"] == 2
    assert [(e["line"], e["reason"]) for e in created["errors"]["duplicates"]] == [(4, "duplicate of line 3")]
    assert [e["line"] for e in created["errors"]["invalid"]] == [5]
    messages = [orjson.loads(line) for line in app_client.get(created["messages_url"], headers=auth(key)).iter_lines()]
    assert [m["phone"] for m in messages] == ["+4915123456789", "+4915123456781"]
    broken = upload(b"phone\n+4915123456789\n+49151\x0023456780\n")
    assert broken.status_code == 422
    assert broken.json()["error"] == {
        "code": "invalid_recipients",
        "message": "line 3: the file contains a NUL character",
    }


def test_accounts_are_isolated(app_client: TestClient, key: str, redis_url: str) -> None:
    created = create(app_client, key).json()
    other = _new_account(redis_url, "other")
    for path in (f"/api/v1/campaigns/{created['id']}", created["messages_url"]):
        response = app_client.get(path, headers=auth(other))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert created["id"] not in [
        c["id"] for c in app_client.get("/api/v1/campaigns", headers=auth(other)).json()["campaigns"]
    ]


def test_keys_can_be_revoked(app_client: TestClient, key: str) -> None:
    new = app_client.post("/api/v1/keys", headers=auth(key)).json()
    assert app_client.get("/api/v1/campaigns", headers=auth(new["key"])).status_code == 200
    assert new["id"] in [k["id"] for k in app_client.get("/api/v1/keys", headers=auth(key)).json()["keys"]]
    assert app_client.delete(f"/api/v1/keys/{new['id']}", headers=auth(key)).status_code == 204
    assert app_client.get("/api/v1/campaigns", headers=auth(new["key"])).status_code == 401
    assert app_client.delete(f"/api/v1/keys/{new['id']}", headers=auth(key)).status_code == 404


def test_domains(app_client: TestClient, key: str, redis_url: str) -> None:
    response = app_client.post(
        "/api/v1/domains",
        json={"host": "go.shop.example", "fallback_url": "https://shop.example/", "token_length": 8},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    created = create(app_client, key).json()
    assert created["domain"] == "go.shop.example"
    row = orjson.loads(app_client.get(created["messages_url"], headers=auth(key)).text.splitlines()[0])
    assert all(len(url.rsplit("/", 1)[1]) == 8 for url in row["links"])
    other = _new_account(redis_url, "other")
    taken = app_client.post("/api/v1/domains", json={"host": "go.shop.example"}, headers=auth(other))
    assert taken.status_code == 409
    foreign = create(app_client, other, domain="go.shop.example")
    assert foreign.status_code == 422 and foreign.json()["error"]["code"] == "unknown_domain"


PHONE = "+4915123456789"


def as_json(**fields: Any) -> dict[str, Any]:
    return {"json": {"text": TEXT, "recipients": [PHONE], **fields}}


def as_form(csv: bytes, field: str = "recipients", **fields: str) -> dict[str, Any]:
    return {"files": {field: ("list.csv", csv)}, "data": {"text": TEXT, **fields}}


def campaign_count(client: Client) -> int:
    return int(client.query(f"SELECT count() FROM {DATABASE}.campaigns FINAL").result_rows[0][0])


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": JSON}, 400, "invalid_json"),
        ({"content": b"[1, 2]", "headers": JSON}, 400, "invalid_json"),
        ({"json": {"text": TEXT}}, 422, "invalid_field"),
        (as_json(recipients=PHONE), 422, "invalid_field"),
        (as_json(text="no links here"), 422, "invalid_field"),
        (as_json(text="javascript:alert(1) /relative"), 422, "invalid_field"),
        (as_json(text="x" * 50_000 + " https://a.example"), 422, "invalid_field"),
        (as_json(text=7), 422, "invalid_field"),
        (as_json(recipients=["nope", "123"]), 422, "no_recipients"),
        (as_json(expires_at="2001-01-01T00:00:00Z"), 422, "invalid_field"),
        (as_json(sent_at="yesterday"), 422, "invalid_field"),
        (as_json(sent_at="2026-01-01T00:00:00"), 422, "invalid_field"),
        (as_json(utm=[1]), 422, "invalid_field"),
        (as_json(click_param="yes"), 422, "invalid_field"),
        (as_json(scheme="sometimes"), 422, "invalid_field"),
        (as_json(default_region="Atlantis"), 422, "invalid_field"),
        (as_json(domain="nobody.example"), 422, "unknown_domain"),
        ({"content": b"phone\n1", "headers": {"content-type": "text/csv"}}, 415, "unsupported_media_type"),
        (as_form(b"name\nAna\n"), 422, "invalid_recipients"),
        (as_form(b"phone\n\xff\xfe\n"), 422, "invalid_recipients"),
        (as_form(b'phone\n+4915123456789\n"+4915123456780\0\n'), 422, "invalid_recipients"),
        (as_form(b'phone\n+4915123456789\n"+4915123456780\n'), 422, "invalid_recipients"),
        (as_form(b"phone," + b"c," * 300 + b"x\n"), 422, "invalid_recipients"),
        (as_form(b"phone\n" + b"x" * 1_100_000 + b"\n"), 422, "no_recipients"),
        (as_form(b"phone\n1\n", field="other"), 422, "invalid_field"),
        (as_form(b"phone\n+4915123456789\n", text="no link"), 422, "invalid_field"),
        (as_form(b"phone\n+4915123456789\n", utm="{x"), 422, "invalid_field"),
        ({"data": {"text": TEXT, "recipients": PHONE}}, 415, "unsupported_media_type"),
        (as_form(b"phone\n" + b"+4915123456789\n" * 200_000), 413, "payload_too_large"),
    ],
)
def test_bad_requests_are_clear_4xx_and_create_nothing(
    app_client: TestClient, chdb_client: Client, key: str, request_kwargs: dict[str, Any], status: int, code: str
) -> None:
    before = campaign_count(chdb_client)
    kwargs = dict(request_kwargs)
    headers = {**kwargs.pop("headers", {}), **auth(key)}
    response = app_client.post("/api/v1/campaigns", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert campaign_count(chdb_client) == before


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer nonsense", "Basic abc", "Bearer sck_" + "x" * 500, "Bearer \x7f"]
)
def test_auth_is_required(app_client: TestClient, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = app_client.get("/api/v1/campaigns", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_unknown_ids_and_routes(app_client: TestClient, key: str) -> None:
    for path in (
        "/api/v1/campaigns/cmp_0000000000000000",
        "/api/v1/campaigns/..%2F..",
        "/api/v1/campaigns/" + "x" * 5000,
    ):
        response = app_client.get(path, headers=auth(key))
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert app_client.get("/api/v1/nowhere", headers=auth(key)).status_code == 404
    assert app_client.put("/api/v1/campaigns", headers=auth(key)).json()["error"]["code"] == "method_not_allowed"
    created = create(app_client, key).json()
    bad_format = app_client.get(created["messages_url"] + "?format=xml", headers=auth(key))
    assert bad_format.status_code == 400


def test_openapi_is_valid_and_matches_the_routes(app_client: TestClient) -> None:
    document = app_client.get("/openapi.json").json()
    assert document == orjson.loads(orjson.dumps(openapi_document()))
    validate(document)
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {
        (route.path, method)
        for route in control_routes()
        if isinstance(route, Route) and route.path.startswith(("/api/", "/reports/"))
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert documented == served


def test_healthz_without_a_sink(app_client: TestClient) -> None:
    response = app_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "sink": None}


def test_healthz_shows_the_sink_and_its_lease(
    redis_url: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    migrate(chdb_client)
    settings = Settings(data_dir=Path(tmp_path_factory.mktemp("data")), redis_url=redis_url, secret=SECRET)
    sink = SinkSettings(batch_wait=0.05, consumer=f"control-{uuid.uuid4().hex[:8]}")
    app = create_control_app(settings, analytics=AnalyticsStore(chdb_client), sink=sink)
    with TestClient(app) as client:
        deadline = time.monotonic() + 20
        while True:
            health = client.get("/healthz").json()
            if health["sink"]["active"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert health["status"] == "ok"
        assert health["sink"]["active"] is True
        assert health["sink"]["lease_holder"] == sink.consumer
        assert {"inserted", "backlog", "clickhouse_up"} <= health["sink"].keys()


def test_transactional_message(app_client: TestClient, key: str) -> None:
    response = app_client.post(
        "/api/v1/messages",
        json={"to": "0151 23456789", "id": 42, "text": "Your order ships: https://shop.example/track/123"},
        headers=auth(key),
    )
    assert response.status_code == 201, response.text
    row = response.json()
    assert row["phone"] == "+4915123456789" and row["id"] == "42"
    assert row["text"] == f"Your order ships: {row['links'][0]}"
    assert row["segments"] == 1 and row["encoding"] == "GSM-7"
    campaign = app_client.get(f"/api/v1/campaigns/{row['campaign_id']}", headers=auth(key)).json()
    assert campaign["recipients"] == 1 and campaign["destinations"] == ["https://shop.example/track/123"]


def test_transactional_routing_data_is_swept_after_the_retention(
    app_client: TestClient, key: str, redis_url: str
) -> None:
    async def redis_call(name: str, *args: Any) -> Any:
        redis = connect(redis_url)
        try:
            return await getattr(redis, name)(*args)
        finally:
            await redis.aclose()

    def send(**fields: Any) -> dict[str, Any]:
        body = {"to": PHONE, "text": "Your code: https://shop.example/c", **fields}
        response = app_client.post("/api/v1/messages", json=body, headers=auth(key))
        assert response.status_code == 201, response.text
        return dict(response.json())

    before = asyncio.run(redis_call("zcard", routing.RANGES_KEY))
    started = time.time()
    sent = [send()["campaign_id"] for _ in range(5)]
    expiring = send(expires_at=started + 7_200)["campaign_id"]
    retention = Settings().transactional_days * 86_400
    for campaign_id in sent:
        score = asyncio.run(redis_call("zscore", routing.EXPIRING_KEY, campaign_id))
        assert started + retention <= score <= time.time() + retention
    assert asyncio.run(redis_call("zscore", routing.EXPIRING_KEY, expiring)) == pytest.approx(started + 7_200)
    assert asyncio.run(redis_call("zcard", routing.RANGES_KEY)) == before + 6

    # The message with its own expiry goes first; the others at the end of the retention.
    asyncio.run(routing_sweep(redis_url, started + 7_201))
    assert app_client.get(f"/api/v1/campaigns/{expiring}", headers=auth(key)).status_code == 404
    assert app_client.get(f"/api/v1/campaigns/{sent[0]}", headers=auth(key)).status_code == 200
    asyncio.run(routing_sweep(redis_url, time.time() + retention + 1))
    for campaign_id in sent:
        assert app_client.get(f"/api/v1/campaigns/{campaign_id}", headers=auth(key)).status_code == 404
        assert asyncio.run(redis_call("exists", routing.CAMPAIGN_KEY + campaign_id)) == 0
    # Redis is back where it was: the routing data of transactional messages does not pile up.
    assert asyncio.run(redis_call("zcard", routing.RANGES_KEY)) <= before


async def routing_sweep(redis_url: str, now: float) -> None:
    redis = connect(redis_url)
    try:
        while await routing.sweep_expired(redis, now) > 0:
            pass
    finally:
        await redis.aclose()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": TEXT}, "invalid_field"),
        ({"to": 4915123456789, "text": TEXT}, "invalid_field"),
        ({"to": "nope", "text": TEXT}, "no_recipients"),
        ({"to": PHONE, "text": "no link"}, "invalid_field"),
        ({"to": PHONE, "text": TEXT, "id": [1]}, "invalid_field"),
    ],
)
def test_transactional_message_bad_input(app_client: TestClient, key: str, body: dict[str, Any], code: str) -> None:
    response = app_client.post("/api/v1/messages", json=body, headers=auth(key))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
