from __future__ import annotations

import asyncio
import time

import pytest

from shortcore import routing
from shortcore.routing import MISS, Campaign, RouteCache, RoutingError, link_target, normalize_destination
from shortcore.store import connect

DESTINATIONS = [
    ("https://shop.example/p?x=1", "https://shop.example/p?x=1"),
    ("HTTP://Shop.Example", "http://shop.example/"),
    ("https://exämple.com/ü?q=ä#frag ment", "https://xn--exmple-cua.com/%C3%BC?q=%C3%A4#frag%20ment"),
    ("https://shop.example:8443/a b", "https://shop.example:8443/a%20b"),
    ("https://[2001:db8::1]/x", "https://[2001:db8::1]/x"),
]
REJECTED = [
    "javascript:alert(1)",
    "data:text/html,hi",
    "/relative/path",
    "ftp://files.example/x",
    "https://shop.example/\r\nSet-Cookie: x=1",
    "https://shop.example/\x00",
    "https://user:pass@shop.example/",
    "https:///no-host",
    "https://shop.example/" + "a" * 5000,
    "http://[::1",
]


@pytest.mark.parametrize(("given", "expected"), DESTINATIONS)
def test_destinations_are_normalised(given: str, expected: str) -> None:
    assert normalize_destination(given) == expected


@pytest.mark.parametrize("given", REJECTED)
def test_bad_destinations_are_refused(given: str) -> None:
    with pytest.raises(RoutingError):
        normalize_destination(given)


UTM = (("utm_source", "sms"), ("utm_campaign", "spring sale"))
MERGES = [
    ("https://a.example/", "https://a.example/?utm_source=sms&utm_campaign=spring%20sale&sc_click=C"),
    ("https://a.example/p?x=1", "https://a.example/p?x=1&utm_source=sms&utm_campaign=spring%20sale&sc_click=C"),
    ("https://a.example/p?x=1#top", "https://a.example/p?x=1&utm_source=sms&utm_campaign=spring%20sale&sc_click=C#top"),
    # The destination's own UTM value wins.
    (
        "https://a.example/p?utm_source=mail",
        "https://a.example/p?utm_source=mail&utm_campaign=spring%20sale&sc_click=C",
    ),
    (
        "https://a.example/#/spa/route?x=1",
        "https://a.example/?utm_source=sms&utm_campaign=spring%20sale&sc_click=C#/spa/route?x=1",
    ),
]


@pytest.mark.parametrize(("destination", "expected"), MERGES)
def test_utm_and_click_merge_with_query_and_fragment(destination: str, expected: str) -> None:
    assert link_target(destination, UTM).location("C") == expected


def test_without_utm_or_click_the_destination_is_unchanged() -> None:
    assert link_target("https://a.example/p?x=1#f", ()).location(None) == "https://a.example/p?x=1#f"
    assert link_target("https://a.example/p", ()).location("C") == "https://a.example/p?sc_click=C"


def test_campaign_locates_recipient_and_link() -> None:
    c = Campaign(id="c", account="a", domain="d", seq_start=100, recipients=5, destinations=("https://x.example",) * 3)
    assert c.seq_end == 115
    for r in range(5):
        for link in range(3):
            assert c.locate(c.seq(r, link)) == (r, link)
    with pytest.raises(RoutingError):
        c.seq(5, 0)


def test_campaign_json_round_trip() -> None:
    c = Campaign(
        id="c",
        account="a",
        domain="ul.example",
        seq_start=7,
        recipients=2,
        destinations=("https://x.example/a", "https://y.example/b?q=1"),
        utm=(("utm_source", "sms"),),
        click_param=False,
        sent_at=1.5,
        expires_at=2.5,
        token_length=8,
    )
    assert Campaign.from_json(c.to_json()) == c


def test_register_and_route_from_memory(redis_url: str) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        cache = RouteCache(redis)
        a = await routing.register_campaign(
            redis, id="route-a", account="acc", domain="ul.example", recipients=10, destinations=["https://a.example"]
        )
        b = await routing.register_campaign(
            redis,
            id="route-b",
            account="acc",
            domain="ul.example",
            recipients=3,
            destinations=["https://b.example"] * 2,
        )
        assert b.seq_start == a.seq_end  # one counter, contiguous ranges
        now = time.monotonic()
        assert cache.find(a.seq_start, now) is MISS
        assert await cache.load(a.seq_start + 9) == a
        assert await cache.load(b.seq_start + 5) == b
        assert cache.find(a.seq_start, now) == a
        assert cache.find(b.seq_end - 1, now) == b
        assert await cache.load(b.seq_end + 10**6) is None
        await redis.aclose()

    asyncio.run(main())


def test_cache_follows_changes(redis_url: str) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        cache = RouteCache(redis, poll_interval=0.2)
        watcher = asyncio.create_task(cache.watch())
        c = await routing.register_campaign(
            redis, id="route-c", account="acc", domain="ul.example", recipients=1, destinations=["https://old.example"]
        )
        assert await cache.load(c.seq_start) == c
        for _ in range(100):
            if cache.connected:
                break
            await asyncio.sleep(0.02)
        changed = Campaign(
            id=c.id, account=c.account, domain=c.domain, seq_start=c.seq_start, recipients=1,
            destinations=("https://new.example",),
        )  # fmt: skip
        await routing.update_campaign(redis, changed)
        for _ in range(100):
            if cache.find(c.seq_start, time.monotonic()) is MISS:
                break
            await asyncio.sleep(0.02)
        loaded = await cache.load(c.seq_start)
        assert loaded is not None and loaded.destinations == ("https://new.example",)
        await routing.delete_campaign(redis, c.id)
        for _ in range(100):
            if cache.find(c.seq_start, time.monotonic()) is MISS:
                break
            await asyncio.sleep(0.02)
        assert await cache.load(c.seq_start) is None
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
        await redis.aclose()

    asyncio.run(main())


def test_register_refuses_bad_destinations_and_writes_nothing(redis_url: str) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        with pytest.raises(RoutingError):
            await routing.register_campaign(
                redis, id="route-bad", account="a", domain="d", recipients=1, destinations=["javascript:alert(1)"]
            )
        assert await redis.get(routing.CAMPAIGN_KEY + "route-bad") is None
        await redis.aclose()

    asyncio.run(main())


def test_ten_thousand_links_cost_no_key_each(redis_url: str) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        keys_before = await redis.dbsize()
        await routing.register_campaign(
            redis, id="route-big", account="a", domain="d", recipients=5_000, destinations=["https://a.example"] * 2
        )
        assert await redis.dbsize() - keys_before <= 2  # the campaign record (and the index, once)
        await redis.aclose()

    asyncio.run(main())


def test_routing_data_is_swept_after_remove_at(redis_url: str) -> None:
    async def main() -> None:
        redis = connect(redis_url)
        cache = RouteCache(redis, poll_interval=0.2)
        watcher = asyncio.create_task(cache.watch())
        for _ in range(100):
            if cache.connected:
                break
            await asyncio.sleep(0.02)
        now = time.time()

        async def register(name: str, remove_at: float | None) -> Campaign:
            return await routing.register_campaign(
                redis,
                id=f"sweep-{name}-{now}",
                account="acc",
                domain="ul.example",
                recipients=2,
                destinations=["https://a.example"],
                remove_at=remove_at,
            )

        due = [await register(f"due{i}", now - 10 + i) for i in range(3)]
        later = await register("later", now + 3_600)
        kept = await register("kept", None)
        assert await cache.load(due[0].seq_start) == due[0]
        assert await redis.zscore(routing.EXPIRING_KEY, later.id) == pytest.approx(now + 3_600)
        assert await redis.zscore(routing.EXPIRING_KEY, kept.id) is None

        # Oldest first, at most `limit` a call (the shared Valkey may hold other tests' due ones).
        while await routing.sweep_expired(redis, now, limit=2) == 2:
            pass
        for campaign in due:
            assert await redis.exists(routing.CAMPAIGN_KEY + campaign.id) == 0
            assert await redis.zscore(routing.RANGES_KEY, campaign.id) is None
            assert await redis.zscore(routing.EXPIRING_KEY, campaign.id) is None
        # Edges drop the campaign from memory and then find nothing for its tokens.
        for _ in range(100):
            if cache.find(due[0].seq_start, time.monotonic()) != due[0]:
                break
            await asyncio.sleep(0.02)
        assert await cache.load(due[0].seq_start) is None
        assert await cache.load(later.seq_start) == later
        assert await cache.load(kept.seq_start) == kept

        assert await routing.sweep_expired(redis, now + 3_601) >= 1
        assert await redis.exists(routing.CAMPAIGN_KEY + later.id) == 0
        assert await redis.exists(routing.CAMPAIGN_KEY + kept.id) == 1
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
        await redis.aclose()

    asyncio.run(main())
