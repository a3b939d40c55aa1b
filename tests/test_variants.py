"""A/B variants end to end on a real Valkey and chDB: assignment, creation (JSON and CSV upload),
the edge's redirects, per-variant stats after real requests through the edge and the sink, the
significance maths, bad input, and the report page with its signed links."""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from edge_helpers import BROWSER_HEADERS, SECRET, edge
from starlette.testclient import TestClient

from shortcore import InvalidArgumentError, accounts, reports
from shortcore._core import EventDecoder, VariantLinks
from shortcore.analytics import AnalyticsStore, migrate
from shortcore.clickids import ClickIds
from shortcore.config import Settings
from shortcore.control import create_control_app
from shortcore.conversions import conversion_tag
from shortcore.routing import Campaign, VariantRoute
from shortcore.significance import compare, normal_cdf, verdict
from shortcore.sink import DEAD_KEY, STREAM_KEY, SinkSettings
from shortcore.store import connect
from shortcore.tokens import TokenCodec
from shortcore.variants import VariantAssigner, VariantError, new_seed, parse_variants, sibling_links

from sinkdata import click, conversion, write_events

VARIANTS = [
    {"name": "A", "text": "Spring sale! https://shop.example/a", "weight": 1},
    {"name": "B", "text": "Spring sale, 20% off: https://shop.example/b?x=1 stores www.shop.example/s", "weight": 1},
]


# -- assignment --------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[1, 1], [1, 3], [0.5, 0.3, 0.2], [1] * 26])
def test_assignment_is_deterministic_and_follows_the_weights(weights: list[float]) -> None:
    seed = new_seed()
    assigner = VariantAssigner(seed, weights)
    n = 10_000
    assigned = assigner.variants_of(0, n)
    assert assigned == VariantAssigner(seed, weights).variants_of(0, n)  # the edge computes the same
    assert assigned[1234:1240] == [assigner.variant_of(r) for r in range(1234, 1240)]
    counts = Counter(assigned)
    total = sum(weights)
    for i, weight in enumerate(weights):
        share = weight / total
        # 4.5 binomial standard deviations: a false failure once in ~150,000 runs.
        tolerance = 4.5 * math.sqrt(n * share * (1 - share))
        assert abs(counts[i] - n * share) <= tolerance, (i, counts[i], n * share)


def _reference_variants(seed: str, weights: list[float], first: int, count: int) -> list[int]:
    """The assignment as shortcore.variants documents it, in plain Python (hashlib, fsum, round)."""
    space = 2**64
    total = math.fsum(weights)
    running, bounds = 0.0, []
    for weight in weights[:-1]:
        running += weight
        bounds.append(min(space, round(running / total * space)))
    bounds.append(space)
    base = hashlib.blake2b(key=bytes.fromhex(seed), digest_size=8)
    out = []
    for r in range(first, first + count):
        hasher = base.copy()
        hasher.update(r.to_bytes(8, "little"))
        out.append(bisect.bisect_right(bounds, int.from_bytes(hasher.digest(), "little")))
    return out


@pytest.mark.parametrize(
    "weights",
    [
        [1, 1],
        [1, 3],
        [0.1, 0.2, 0.7],
        [1 / 3, 1 / 3, 1 / 3],
        [1e-6, 1_000_000],
        [0.3, 1e-9, 0.7, 2.5e-7],
        [float(i) for i in range(1, 27)],
        [random.Random(7).uniform(1e-3, 1e3) for _ in range(26)],
    ],
)
@pytest.mark.parametrize("seed", ["00", "ff" * 64, "0123456789abcdef0123456789abcdef"])
def test_rust_assignment_is_pythons(weights: list[float], seed: str) -> None:
    assigner = VariantAssigner(seed, weights)
    starts = (0, 1_000_003, 2**63)
    for first in starts:
        assert assigner.variants_of(first, 3_000) == _reference_variants(seed, weights, first, 3_000)
    assert [assigner.variant_of(r) for r in range(500)] == _reference_variants(seed, weights, 0, 500)
    assert assigner.variant_of(2**64 - 1) == _reference_variants(seed, weights, 2**64 - 1, 1)[0]


def test_assigner_refuses_bad_arguments_clearly() -> None:
    for seed, weights in (("zz", [1.0]), ("", [1.0]), ("00" * 65, [1.0]), ("00", []), ("00", [1, math.nan])):
        with pytest.raises(VariantError):
            VariantAssigner(seed, weights)
    with pytest.raises(OverflowError):
        VariantAssigner("00", [1, 1]).variant_of(-1)


def test_sibling_links_per_variant_and_fallbacks() -> None:
    seed = new_seed()
    described = orjson.dumps(
        {
            "seed": seed,
            "variants": [{"name": n, "weight": 1, "destinations": ["x"] * k} for n, k in (("A", 3), ("B", 1))],
        }
    ).decode()
    links = sibling_links(3, described)
    assert not isinstance(links, int)
    split = VariantAssigner(seed, [1, 1]).variants_of(0, 100)
    assert [links.of(r) for r in range(100)] == [(3, 1)[v] for v in split]
    assert [links.variant(r) for r in range(100)] == [("A", "B")[v] for v in split]
    assert links.of(-1) == 0 and links.variant(-1) is None
    assert sibling_links(2, "") == 2
    assert sibling_links(2, "{not json") == 2
    assert sibling_links(2, orjson.dumps({"seed": "zz", "variants": []}).decode()) == 2
    decoder = EventDecoder()
    with pytest.raises(InvalidArgumentError, match="int or a VariantLinks"):
        decoder.encode(decoder.decode([]), {"cmp_x": "3"}, {})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="1 link count"):
        VariantLinks(VariantAssigner(seed, [1, 1]).core, [3], ["A", "B"])
    with pytest.raises(InvalidArgumentError, match="1 name"):
        VariantLinks(VariantAssigner(seed, [1, 1]).core, [3, 1], ["A"])


def test_assignment_depends_on_the_seed_not_on_the_list_order() -> None:
    a, b = VariantAssigner(new_seed(), [1, 1]), VariantAssigner(new_seed(), [1, 1])
    assert a.variants_of(0, 200) != b.variants_of(0, 200)
    # No runs: the first and second half of a list split alike (sorted lists stay balanced).
    first, second = Counter(a.variants_of(0, 5000)), Counter(a.variants_of(5000, 5000))
    assert abs(first[0] - second[0]) < 250


def test_routing_data_round_trips_and_maps_unused_slots_to_nothing() -> None:
    seed = new_seed()
    campaign = Campaign(
        id="cmp_x",
        account="acc",
        domain="ul.example",
        seq_start=1000,
        recipients=100,
        destinations=("https://shop.example/a",),
        utm=(("utm_source", "sms"),),
        variants=(
            VariantRoute("A", 1, ("https://shop.example/a",)),
            VariantRoute("B", 1, ("https://shop.example/b", "https://shop.example/s")),
        ),
        variant_seed=seed,
    )
    assert campaign.n_links == 2 and campaign.seq_end == 1200
    again = Campaign.from_json(campaign.to_json())
    assert again == campaign and again.n_links == 2
    for r in range(100):
        variant = campaign.variant_of(r)
        assert variant == VariantAssigner(seed, [1, 1]).variant_of(r)
        target = campaign.target(r, 1)
        if variant == 0:
            assert target is None
        else:
            assert target is not None and target.location(None) == (
                "https://shop.example/s?utm_source=sms&utm_content=B"
            )


# -- significance ------------------------------------------------------------------------------


def test_two_proportion_z_test_against_hand_computed_values() -> None:
    # A: 100 of 1000 clicked, B: 150 of 1000. By hand: d = 0.05; pooled p = 250/2000 = 0.125;
    # SE0 = sqrt(0.125 * 0.875 * (2/1000)) = 0.0147902; z = 0.05 / 0.0147902 = 3.3806;
    # p = 2 * (1 - Phi(3.3806)) = 0.000723; SE = sqrt(0.1*0.9/1000 + 0.15*0.85/1000) = 0.0147479,
    # 95% CI = 0.05 -+ 1.96 * 0.0147479 = [0.02109, 0.07891].
    c = compare(100, 1000, 150, 1000)
    assert c.z is not None and c.p_value is not None
    assert c.difference == pytest.approx(0.05)
    assert c.z == pytest.approx(3.3806, abs=1e-4)
    assert c.p_value == pytest.approx(0.000723, abs=2e-6)
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.02109, abs=1e-5), pytest.approx(0.07891, abs=1e-5))
    assert c.significant
    # 50 of 500 against 58 of 500: z = 0.016 / sqrt(0.108 * 0.892 / 250) = 0.016 / 0.019630 = 0.8151;
    # a normal table gives Phi(0.81) = 0.79103, Phi(0.82) = 0.79389, so p = 2 * (1 - 0.79249) = 0.4150.
    small = compare(50, 500, 58, 500)
    assert small.z == pytest.approx(0.8151, abs=1e-4)
    assert small.p_value == pytest.approx(0.4150, abs=3e-4)
    assert not small.significant
    assert normal_cdf(1.959963984540054) == pytest.approx(0.975, abs=1e-12)
    # Three comparisons: the p-value is tripled (Bonferroni).
    assert compare(100, 1000, 150, 1000, comparisons=3).p_adjusted == pytest.approx(3 * c.p_value)


def test_no_verdict_without_enough_data() -> None:
    assert compare(0, 100, 0, 100).p_value is None
    few = compare(1, 20, 4, 20)  # p < 0.2 but far too few clicks for the normal approximation
    assert not few.significant and "too few" in few.note
    assert verdict(["A", "B"], [0, 0], [100, 100])["winner"] is None
    assert verdict(["A", "B"], [100, 150], [1000, 1000])["winner"] == "B"
    assert verdict(["A", "B"], [150, 100], [1000, 1000])["winner"] == "A"
    # B and C both beat A, but C does not beat B significantly: nobody wins yet.
    tie = verdict(["A", "B", "C"], [100, 200, 205], [1000, 1000, 1000])
    assert tie["winner"] is None and "none of them" in tie["text"]
    assert verdict(["A", "B", "C"], [100, 200, 320], [1000, 1000, 1000])["winner"] == "C"


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([VARIANTS[0]], "2 to 26"),
        ("not json", "not valid JSON"),
        ([VARIANTS[0], {**VARIANTS[1], "name": "a"}], "used twice"),
        ([VARIANTS[0], {**VARIANTS[1], "weight": 0}], "weight"),
        ([VARIANTS[0], {**VARIANTS[1], "weight": True}], "weight"),
        ([VARIANTS[0], {**VARIANTS[1], "weight": float("inf")}], "weight"),
        ([VARIANTS[0], {**VARIANTS[1], "name": "has space"}], "name"),
        ([VARIANTS[0], {**VARIANTS[1], "extra": 1}], "unknown field"),
        ([VARIANTS[0], "B"], "must be an object"),
        ([{**VARIANTS[0], "name": f"v{i}"} for i in range(27)], "2 to 26"),
    ],
)
def test_parse_refuses_bad_variants(value: Any, message: str) -> None:
    with pytest.raises(VariantError, match=message):
        parse_variants(value)


# -- through the control API, the edge and the sink ---------------------------------------------


def _key(redis_url: str, name: str) -> tuple[str, str]:
    async def make() -> tuple[str, str]:
        redis = connect(redis_url)
        account, key = await accounts.create_account(redis, name, default_region="DE")
        await redis.aclose()
        return account.id, key.secret

    return asyncio.run(make())


@pytest.fixture(scope="module")
def world(redis_url: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    migrate(chdb_client)

    async def fresh() -> None:
        redis = connect(redis_url)
        await redis.delete(STREAM_KEY, DEAD_KEY)
        await redis.aclose()

    asyncio.run(fresh())
    # The tests click both links of a message and many messages from one machine within
    # seconds; the sink's sequence rules (tested in test_sink.py) would rightly call that a bot.
    account_id, key = _key(redis_url, "ab tester")
    data_dir = Path(tmp_path_factory.mktemp("data"))
    settings = Settings(data_dir=data_dir, redis_url=redis_url, secret=SECRET, base_url="https://ul.example")
    app = create_control_app(
        settings,
        analytics=AnalyticsStore(chdb_client),
        sink=SinkSettings(batch_wait=0.05, sweep_recipients=0, sibling_window=0.001),
    )
    with TestClient(app) as client:
        yield {
            "client": client,
            "key": key,
            "account": account_id,
            "headers": {"Authorization": f"Bearer {key}"},
            "data_dir": data_dir,
        }


def _create(world: dict[str, Any], **fields: Any) -> Any:
    body = {"name": "ab", "variants": VARIANTS, "recipients": [f"+4915123{i:06d}" for i in range(60)], **fields}
    return world["client"].post("/api/v1/campaigns", json=body, headers=world["headers"])


def _messages(world: dict[str, Any], created: dict[str, Any]) -> list[dict[str, Any]]:
    text = world["client"].get(created["messages_url"], headers=world["headers"]).text
    return [orjson.loads(line) for line in text.splitlines()]


def test_create_with_variants(world: dict[str, Any]) -> None:
    response = _create(world, utm=True)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["links"] == 2  # the token range holds the most links any variant has
    assert [(v["name"], v["links"]) for v in created["variants"]] == [("A", 1), ("B", 2)]
    assert sum(v["messages"] for v in created["variants"]) == created["messages"] == 60
    rows = _messages(world, created)
    campaign = world["client"].get(f"/api/v1/campaigns/{created['id']}", headers=world["headers"]).json()
    assert [v["name"] for v in campaign["variants"]] == ["A", "B"] and campaign["links"] == 2
    codec = TokenCodec(SECRET.encode())
    seqs = [[codec.decode(url.rsplit("/", 1)[1]) for url in row["links"]] for row in rows]
    start = seqs[0][0]
    assigned = Counter()
    for r, (row, seq) in enumerate(zip(rows, seqs, strict=True)):
        assigned[row["variant"]] += 1
        # Recipient r's link l is seq_start + r * 2 + l, whichever variant it got.
        assert seq == [start + r * 2 + link for link in range(len(seq))]
        if row["variant"] == "A":
            assert len(row["links"]) == 1 and row["text"] == f"Spring sale! {row['links'][0]}"
        else:
            assert len(row["links"]) == 2 and row["text"].startswith("Spring sale, 20% off: ")
    assert set(assigned) == {"A", "B"}
    assert dict(assigned) == {v["name"]: v["messages"] for v in created["variants"]}
    csv_rows = world["client"].get(created["messages_url"] + "?format=csv", headers=world["headers"]).text
    assert csv_rows.splitlines()[0].endswith(",links,variant")


def test_transactional_message_with_variants(world: dict[str, Any]) -> None:
    response = world["client"].post(
        "/api/v1/messages", json={"to": "+4915123000999", "variants": VARIANTS}, headers=world["headers"]
    )
    assert response.status_code == 201, response.text
    row = response.json()
    assert row["variant"] in ("A", "B") and len(row["links"]) == (1 if row["variant"] == "A" else 2)


def test_create_with_variants_from_a_csv_upload(world: dict[str, Any]) -> None:
    csv = "phone,id\n" + "".join(f"+49151{i:08d},r{i}\n" for i in range(300))
    response = world["client"].post(
        "/api/v1/campaigns",
        data={"name": "upload ab", "variants": orjson.dumps(VARIANTS).decode()},
        files={"recipients": ("list.csv", csv.encode(), "text/csv")},
        headers=world["headers"],
    )
    assert response.status_code == 201, response.text
    created = response.json()
    counts = Counter(row["variant"] for row in _messages(world, created))
    assert counts == {v["name"]: v["messages"] for v in created["variants"]}
    assert min(counts.values()) > 100


@pytest.mark.parametrize(
    ("fields", "code", "needle"),
    [
        ({"text": "also https://x.example"}, "invalid_field", "either 'text' or 'variants'"),
        ({"variants": VARIANTS[:1]}, "invalid_variants", "2 to 26"),
        ({"variants": [VARIANTS[0], {**VARIANTS[1], "text": "no link here"}]}, "invalid_variants", "variants[1] (B)"),
        ({"variants": [VARIANTS[0], {**VARIANTS[1], "text": "x" * 1601}]}, "invalid_variants", "1600"),
        ({"variants": [VARIANTS[0], {**VARIANTS[1], "weight": -1}]}, "invalid_variants", "weight"),
        ({"variants": {"A": "x"}}, "invalid_variants", "list"),
    ],
)
def test_bad_variants_are_422(world: dict[str, Any], fields: dict[str, Any], code: str, needle: str) -> None:
    response = _create(world, **fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code and needle in error["message"]


def test_bad_variants_in_a_form_are_422(world: dict[str, Any]) -> None:
    response = world["client"].post(
        "/api/v1/campaigns",
        data={"name": "upload ab", "variants": "[{"},
        files={"recipients": ("list.csv", b"phone\n+4915100000001\n", "text/csv")},
        headers=world["headers"],
    )
    assert response.status_code == 422 and "JSON" in response.json()["error"]["message"]


async def _clicks(world: dict[str, Any], rows: list[dict[str, Any]], plan: list[tuple[int, int]]) -> list[str]:
    """Each (recipient, link) of ``plan`` requested through the real edge, from its own address."""
    locations = []
    for n, (recipient, link) in enumerate(plan):
        url = rows[recipient]["links"][link]
        async with edge(world["redis_url"], world["data_dir"], client_ip=f"198.51.{n // 250}.{n % 250 + 1}") as (
            _,
            client,
        ):
            response = await client.get("/" + url.rsplit("/", 1)[1], headers=BROWSER_HEADERS)
            assert response.status_code == 302
            locations.append(response.headers["location"])
    return locations


def test_edge_redirects_to_the_variants_destination(world: dict[str, Any], redis_url: str) -> None:
    world["redis_url"] = redis_url
    created = _create(world, sent_at=time.time() - 3600).json()
    rows = _messages(world, created)
    b_rows = [r for r, row in enumerate(rows) if row["variant"] == "B"]
    a_rows = [r for r, row in enumerate(rows) if row["variant"] == "A"]

    async def run() -> None:
        async with edge(redis_url, world["data_dir"]) as (_, client):
            for r in a_rows[:3]:
                token = rows[r]["links"][0].rsplit("/", 1)[1]
                response = await client.get("/" + token, headers=BROWSER_HEADERS)
                assert response.status_code == 302
                location = urlsplit(response.headers["location"])
                assert location.path == "/a" and parse_qs(location.query)["utm_content"] == ["A"]
            for r in b_rows[:3]:
                for link, path in ((0, "/b"), (1, "/s")):
                    token = rows[r]["links"][link].rsplit("/", 1)[1]
                    response = await client.get("/" + token, headers=BROWSER_HEADERS)
                    location = urlsplit(response.headers["location"])
                    assert location.path == path and parse_qs(location.query)["utm_content"] == ["B"]
            # Recipient of A, link slot 1: allocated, never sent, answered as unknown.
            codec = TokenCodec(SECRET.encode())
            first = codec.decode(rows[a_rows[0]]["links"][0].rsplit("/", 1)[1])
            assert first is not None
            response = await client.get("/" + codec.encode(first + 1), headers=BROWSER_HEADERS)
            assert response.status_code == 404

    asyncio.run(run())


def test_campaign_utm_content_wins(world: dict[str, Any], redis_url: str) -> None:
    created = _create(world, utm={"source": "sms", "content": "mine"}).json()
    rows = _messages(world, created)

    async def run() -> None:
        async with edge(redis_url, world["data_dir"]) as (_, client):
            response = await client.get("/" + rows[0]["links"][0].rsplit("/", 1)[1], headers=BROWSER_HEADERS)
            assert parse_qs(urlsplit(response.headers["location"]).query)["utm_content"] == ["mine"]

    asyncio.run(run())


@pytest.fixture(scope="module")
def clicked(world: dict[str, Any], redis_url: str) -> dict[str, Any]:
    """A campaign whose recipients were clicked through the real edge and sunk into chDB."""
    world["redis_url"] = redis_url
    created = _create(world, name="clicked", sent_at=time.time() - 3600).json()
    rows = _messages(world, created)
    a = [r for r, row in enumerate(rows) if row["variant"] == "A"]
    b = [r for r, row in enumerate(rows) if row["variant"] == "B"]
    # A: 3 recipients click (one twice); B: 6 recipients click, two of them both links.
    plan = [(a[0], 0), (a[0], 0), (a[1], 0), (a[2], 0)]
    plan += [(r, 0) for r in b[:6]] + [(b[0], 1), (b[1], 1)]
    locations = asyncio.run(_clicks(world, rows, plan))
    url = f"/api/v1/campaigns/{created['id']}/stats"

    def stats_when(done: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            stats: dict[str, Any] = world["client"].get(url, headers=world["headers"]).json()
            if done(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.1)

    stats_when(lambda s: s.get("human_clicks") == len(plan))
    # Two orders of one B clicker (the click id from the redirect), one of them sent twice.
    click_id = parse_qs(urlsplit(locations[4]).query)["sc_click"][0]
    for order, value in (("ab-1", 20.0), ("ab-2", 5.5), ("ab-2", 5.5)):
        response = world["client"].post(
            "/api/v1/conversions",
            json={"click_id": click_id, "value": value, "currency": "EUR", "order_id": order},
            headers=world["headers"],
        )
        assert response.status_code in (200, 202), response.text
    stats = stats_when(lambda s: s.get("conversions") == 2)
    return {"created": created, "rows": rows, "stats": stats, "a": a, "b": b}


def test_stats_per_variant_after_real_clicks(clicked: dict[str, Any]) -> None:
    stats = clicked["stats"]
    assert stats["human_clicks"] == 12 and stats["unique_clickers"] == 9
    by_name = {v["name"]: v for v in stats["variants"]}
    a, b = by_name["A"], by_name["B"]
    assert (a["messages"], b["messages"]) == (len(clicked["a"]), len(clicked["b"]))
    assert (a["human_clicks"], a["unique_clickers"]) == (4, 3)
    assert (b["human_clicks"], b["unique_clickers"]) == (8, 6)
    assert a["click_through_rate"] == round(3 / a["messages"], 6)
    assert b["click_through_rate"] == round(6 / b["messages"], 6)
    assert [link["human_clicks"] for link in b["links"]] == [6, 2]
    assert (a["conversions"], a["conversion_value"], a["conversion_rate"]) == (0, 0.0, 0.0)
    assert (b["conversions"], b["conversion_value"]) == (2, 25.5)
    assert b["conversion_rate"] == round(2 / 6, 6)
    assert b["links"][1]["destination"] == "https://www.shop.example/s"
    assert a["vs_control"] is None
    expected = compare(3, a["messages"], 6, b["messages"])
    assert b["vs_control"]["ctr_difference"] == round(expected.difference, 6)
    assert b["vs_control"]["significant"] is False  # far too few clicks to call it
    assert stats["ab_test"]["control"] == "A" and stats["ab_test"]["winner"] is None
    assert stats["links"][1]["by_variant"] == {"B": "https://www.shop.example/s"}


def test_clicks_export_names_the_variant(world: dict[str, Any], clicked: dict[str, Any]) -> None:
    url = f"/api/v1/campaigns/{clicked['created']['id']}/clicks"
    lines = [orjson.loads(x) for x in world["client"].get(url, headers=world["headers"]).text.splitlines()]
    assert {(row["variant"], row["destination"]) for row in lines} == {
        ("A", "https://shop.example/a"),
        ("B", "https://shop.example/b?x=1"),
        ("B", "https://www.shop.example/s"),
    }


def test_cli_prints_the_variant_table(clicked: dict[str, Any]) -> None:
    from shortcore.stats import stats_lines

    text = stats_lines(clicked["stats"])
    assert re.search(r"^A\s+\(control\)\s+", text, re.MULTILINE) or re.search(r"^A \(control\)", text, re.M)
    assert "No significant difference" in text


# -- events carry their variant ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(world: dict[str, Any], redis_url: str, chdb_client: Client) -> dict[str, Any]:
    """A variant campaign of 200 recipients created through the API, with humans, previews and
    bots on both variants' links, a request with no recipient, and attributed conversions, all
    written to the stream as the edge writes them and stored by the control app's sink."""
    created = _create(world, name="mixed", recipients=[f"+4915124{i:06d}" for i in range(200)]).json()
    campaign, account = created["id"], world["account"]
    rows = _messages(world, created)
    a = [r for r, row in enumerate(rows) if row["variant"] == "A"]
    b = [r for r, row in enumerate(rows) if row["variant"] == "B"]
    t = time.time() - 600
    plan = [(r, 0, "human") for r in a[:5]] + [(a[0], 0, "human")]
    plan += [(r, n % 2, "human") for n, r in enumerate(b[:40])] + [(b[0], 1, "human")]
    plan += [(r, 0, "preview") for r in a[3:13]] + [(r, 1, "preview") for r in b[30:38]]
    plan += [(r, 0, "bot") for r in a[20:23]] + [(r, 1, "bot") for r in b[50:54]]
    clicks = [
        click(campaign, r, link, label=label, at=t + n, ip=f"192.0.2.{n % 250}", account=account)
        for n, (r, link, label) in enumerate(plan)
    ]
    clicks.append(click(campaign, -1, 0, label="bot", at=t + len(plan), account=account))
    tag, sign = conversion_tag(SECRET.encode(), account), ClickIds(SECRET.encode()).issue
    orders = [
        conversion(sign(clicks[0]["event_id"]), 20, "mx-1", at=t + 500, tag=tag),
        conversion(sign(clicks[7]["event_id"]), 7.5, "mx-2", at=t + 501, tag=tag),
        conversion(sign(clicks[8]["event_id"]), 2.5, "", at=t + 502, tag=tag),
    ]
    count = f"SELECT count() FROM shortcore.events FINAL WHERE campaign_id = '{campaign}'"

    async def write(events: list[dict[str, Any]]) -> None:
        redis = connect(redis_url)
        await write_events(redis, events)
        await redis.aclose()

    for events, total in ((clicks, len(clicks)), (orders, len(clicks) + len(orders))):
        asyncio.run(write(events))
        deadline = time.monotonic() + 30
        while chdb_client.query(count).result_rows[0][0] < total:
            assert time.monotonic() < deadline, "the sink did not store the events in time"
            time.sleep(0.1)
    plan_json = chdb_client.query(
        "SELECT variants FROM shortcore.campaigns FINAL WHERE id = %(c)s", parameters={"c": campaign}
    ).result_rows[0][0]
    return {"campaign": campaign, "plan": orjson.loads(plan_json), "a": a, "b": b}


def test_each_event_carries_its_recipients_variant(
    world: dict[str, Any], mixed: dict[str, Any], chdb_client: Client
) -> None:
    from shortcore.stats import click_page

    campaign = mixed["campaign"]
    stored = {
        int(r): str(v)
        for r, v in chdb_client.query(
            "SELECT recipient_index, variant FROM shortcore.messages FINAL WHERE campaign_id = %(c)s",
            parameters={"c": campaign},
        ).result_rows
    }
    events = chdb_client.query(
        "SELECT event_id, type, class, recipient_index, variant FROM shortcore.events FINAL WHERE campaign_id = %(c)s",
        parameters={"c": campaign},
    ).result_rows
    assert {(kind, label) for _, kind, label, _, _ in events} == {
        ("click", "human"), ("click", "preview"), ("click", "bot"), ("conversion", "human"),
    }  # fmt: skip
    for _, _, _, recipient, variant in events:
        assert variant == (stored[recipient] if recipient >= 0 else ""), (recipient, variant)
    assert {v for *_, v in events} == {"A", "B", ""}
    # The clicks export names the same variant, read from the messages with the phone.
    by_id = {str(event_id): variant for event_id, *_, variant in events}
    page = click_page(chdb_client, campaign, None)
    assert len(page) == len(events)
    assert all(row["variant"] == by_id[str(row["event_id"])] for row in page)


def test_variant_figures_from_the_events_equal_the_join(mixed: dict[str, Any], chdb_client: Client) -> None:
    from shortcore.stats import variant_clicks, variant_figures

    campaign, plan = mixed["campaign"], mixed["plan"]
    assert variant_clicks(chdb_client, campaign, from_events=True) == variant_clicks(
        chdb_client, campaign, from_events=False
    )
    from_events = variant_figures(chdb_client, campaign, plan)
    # The same campaign as if half of its events were stored before the sink wrote the variant:
    # the stats notice and join with the messages instead.
    copy = "cmp_" + new_seed()[:16]
    for table in ("messages", "events"):
        chdb_client.command(
            f"INSERT INTO shortcore.{table} SELECT * REPLACE ('{copy}' AS campaign_id"
            + (", if(cityHash64(event_id) % 2 = 0, '', variant) AS variant" if table == "events" else "")
            # A subquery: the replaced campaign_id would be the one a WHERE here compares.
            + f") FROM (SELECT * FROM shortcore.{table} FINAL WHERE campaign_id = '{campaign}')"
        )
    blanks = chdb_client.query(
        f"SELECT countIf(variant = ''), countIf(variant != '') FROM shortcore.events FINAL "
        f"WHERE campaign_id = '{copy}' AND recipient_index >= 0"
    ).result_rows[0]
    assert min(blanks) > 10
    assert variant_clicks(chdb_client, copy, from_events=True) is None
    joined = variant_figures(chdb_client, copy, plan)
    assert joined == from_events
    a, b = (v for v in from_events["variants"])
    assert (a["unique_clickers"], b["unique_clickers"]) == (5, 40)
    assert (a["views"], b["views"], a["bot_hits"], b["bot_hits"]) == (10, 8, 3, 4)
    assert [link["human_clicks"] for link in b["links"]] == [20, 21]
    assert (a["conversions"], a["conversion_value"], b["conversions"], b["conversion_value"]) == (1, 20.0, 2, 10.0)
    assert (a["messages"], b["messages"]) == (len(mixed["a"]), len(mixed["b"]))
    assert from_events["ab_test"]["winner"] == "B" and b["vs_control"]["significant"] is True


def test_the_docs_variant_query_reads_the_events(mixed: dict[str, Any], chdb_client: Client) -> None:
    from shortcore.stats import variant_figures

    docs = (Path(__file__).resolve().parent.parent / "docs" / "analytics.md").read_text()
    query = re.search(r"^### 15\. .+?\n\n```sql\n(.*?)```", docs, flags=re.M | re.S)
    assert query is not None
    rows = chdb_client.query(query.group(1), parameters={"campaign": mixed["campaign"]}).result_rows
    figures = variant_figures(chdb_client, mixed["campaign"], mixed["plan"])["variants"]
    expected = [(v["name"], v["messages"], v["unique_clickers"], round(v["click_through_rate"], 4)) for v in figures]
    assert [(str(v), int(m), int(u), float(r)) for v, m, u, r in rows] == expected


# -- the report page ---------------------------------------------------------------------------


def test_report_page_with_a_key_and_with_a_signed_link(world: dict[str, Any], clicked: dict[str, Any]) -> None:
    client: TestClient = world["client"]
    campaign = clicked["created"]["id"]
    page = client.get(f"/reports/campaigns/{campaign}", headers=world["headers"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "<svg" in html and "<script" not in html.lower() and "http://" not in html.replace("http://www.w3", "")
    assert "A (control)" in html and "No significant difference" in html
    assert f"{clicked['stats']['unique_clickers']:,}" in html

    link = client.get(f"/api/v1/campaigns/{campaign}/report-link?ttl=600", headers=world["headers"]).json()
    assert abs(link["expires_at"] - (time.time() + 600)) < 5
    path = link["url"].split("://", 1)[1].split("/", 1)[1]
    signed = client.get("/" + path)
    assert signed.status_code == 200 and "A (control)" in signed.text
    assert signed.headers["referrer-policy"] == "no-referrer" and signed.headers["cache-control"] == "no-store"
    # A link whose expiry was pushed out by hand no longer matches its signature.
    later = re.sub(r"exp=(\d+)", lambda m: f"exp={int(m.group(1)) + 86_400}", path)
    assert later != path and client.get("/" + later).status_code == 401


def test_report_page_refuses_wrong_credentials(world: dict[str, Any], clicked: dict[str, Any], redis_url: str) -> None:
    client: TestClient = world["client"]
    campaign = clicked["created"]["id"]
    _, other = _key(redis_url, "someone else")
    foreign = client.get(f"/reports/campaigns/{campaign}", headers={"Authorization": f"Bearer {other}"})
    assert foreign.status_code == 404 and "A (control)" not in foreign.text
    assert foreign.headers["content-type"].startswith("text/html")
    # Another account's signed link for its own campaign does not open this one.
    theirs = client.post(
        "/api/v1/campaigns",
        json={"name": "theirs", "text": "https://x.example", "recipients": ["+4915100000009"]},
        headers={"Authorization": f"Bearer {other}"},
    ).json()["id"]
    their_link = client.get(
        f"/api/v1/campaigns/{theirs}/report-link", headers={"Authorization": f"Bearer {other}"}
    ).json()["url"]
    query = their_link.split("?", 1)[1]
    own = client.get(f"/reports/campaigns/{theirs}?{query}")  # a campaign of one text: no A/B section
    assert own.status_code == 200 and "<h2>Links</h2>" in own.text and "A/B test" not in own.text
    assert client.get(f"/reports/campaigns/{campaign}?{query}").status_code == 401
    assert (
        client.get(
            f"/api/v1/campaigns/{campaign}/report-link", headers={"Authorization": f"Bearer {other}"}
        ).status_code
        == 404
    )
    assert client.get(f"/reports/campaigns/{campaign}").status_code == 401
    assert client.get(f"/reports/campaigns/{campaign}?key={world['key']}").status_code == 401
    assert client.get(f"/reports/campaigns/{campaign}", headers={"Authorization": "Bearer nope"}).status_code == 401
    expired = reports.link_query(SECRET.encode(), world["account"], campaign, int(time.time()) - 1)
    assert client.get(f"/reports/campaigns/{campaign}?{expired}").status_code == 401
    assert client.get(f"/reports/campaigns/{campaign}?exp=abc&sig=x").status_code == 401
    assert client.get("/reports/campaigns/cmp_0000000000000000?exp=1&sig=x").status_code == 404
    assert client.get("/reports/campaigns/../../etc?exp=1&sig=x").status_code == 404
    bad_ttl = client.get(f"/api/v1/campaigns/{campaign}/report-link?ttl=5", headers=world["headers"])
    assert bad_ttl.status_code == 400 and bad_ttl.json()["error"]["code"] == "invalid_parameter"


def test_webhook_link_is_the_recipients_variants(redis_url: str) -> None:
    from shortcore import routing
    from shortcore.webhooks import WebhookService

    async def run() -> None:
        redis = connect(redis_url)
        seed = new_seed()
        routes = (
            VariantRoute("A", 1, ("https://shop.example/a",)),
            VariantRoute("B", 1, ("https://shop.example/b", "https://shop.example/s")),
        )
        campaign = await routing.register_campaign(
            redis,
            id="cmp_" + seed[:16],
            account="acc",
            domain="ul.example",
            recipients=50,
            destinations=routes[0].destinations,
            variants=routes,
            variant_seed=seed,
        )
        service = WebhookService(redis, None)
        for r in range(50):
            variant = campaign.variant_of(r)
            assert await service._link_url(campaign.id, 0, r) == routes[variant].destinations[0]
            expected = None if variant == 0 else "https://shop.example/s"
            assert await service._link_url(campaign.id, 1, r) == expected
        await redis.aclose()

    asyncio.run(run())
