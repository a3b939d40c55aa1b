"""Edge-shaped events for the sink's tests and bench (the fields shortcore.edge writes)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from shortcore.events import EVENT_VERSION, EventIds
from shortcore.sink import DEAD_KEY, STREAM_KEY
from shortcore.store import AnyRedis, connect

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Mobile Safari/537.36"
)
WHATSAPP = "WhatsApp/2.23.20.0 A"
_IDS = EventIds()


def click(
    campaign: str = "",
    recipient: int = -1,
    link: int = 0,
    *,
    label: str = "human",
    reason: str | None = None,
    at: float | None = None,
    ip: str = "203.0.113.7",
    ua: str = IPHONE,
    **extra: Any,
) -> dict[str, Any]:
    now = time.time() if at is None else at
    event = {
        "v": EVENT_VERSION,
        "event_id": _IDS.new(now),
        "time": int(now * 1000),
        "type": "click",
        "outcome": "ok" if campaign else "unknown",
        "account": "acc_test" if campaign else "",
        "campaign_id": campaign,
        "domain": "ul.example",
        "token": "aB3dE5f",
        "recipient_index": recipient,
        "link_index": link if campaign else -1,
        "class": label,
        "reason": reason or ("human" if label == "human" else f"{label}:test"),
        "browser": "Safari" if ua == IPHONE else "Chrome",
        "os": "iOS" if ua == IPHONE else "Android",
        "device": "mobile",
        "method": "GET",
        "ip": ip,
        "user_agent": ua,
        "headers": {"accept": "text/html", "accept-language": "en-GB"},
        "click_id": "",
    }
    event["click_id"] = event["event_id"] if campaign else ""
    event.update(extra)
    return event


def conversion(
    click_id: str, value: float = 10.0, order_id: str = "", at: float | None = None, tag: str = "ct_1"
) -> dict[str, Any]:
    now = time.time() if at is None else at
    return {
        "v": EVENT_VERSION,
        "event_id": _IDS.new(now),
        "time": int(now * 1000),
        "type": "conversion",
        "outcome": "ok",
        "account": "",
        "campaign_id": "",
        "domain": "shop.example",
        "token": "",
        "recipient_index": -1,
        "link_index": -1,
        "class": "human",
        "reason": "human",
        "browser": "Safari",
        "os": "iOS",
        "device": "mobile",
        "method": "GET",
        "ip": "203.0.113.7",
        "user_agent": IPHONE,
        "headers": {},
        "click_id": click_id,
        "click_param": "",
        "click_cookie": click_id,
        "conversion_tag": tag,
        "event_name": "purchase",
        "value": value,
        "value_raw": "",
        "currency": "EUR",
        "order_id": order_id,
        "page": "https://shop.example/thanks",
    }


def encode(event: dict[str, Any]) -> bytes:
    # A copy: orjson's bytes keep the block they were written in, several KB for a 600-byte
    # event, and the bench holds hundreds of thousands of them.
    return bytes(memoryview(orjson.dumps(event)))


def bulk(n: int, campaigns: int = 50, start: float | None = None) -> list[bytes]:
    """``n`` varied events, as the stream holds them; recipients never repeat, so no sequence
    rule fires."""
    now = time.time() if start is None else start
    uas = (IPHONE, ANDROID, WHATSAPP)
    out = []
    for i in range(n):
        label = "preview" if i % 3 == 2 else "human"
        out.append(
            encode(
                click(
                    f"cmp_{i % campaigns:016x}",
                    i,
                    0,
                    label=label,
                    at=now + i / 100_000,
                    ip=f"10.{i % 256}.{(i // 256) % 256}.{i % 7}",
                    ua=uas[i % 3],
                )
            )
        )
    return out


async def fresh_stream(url: str) -> AnyRedis:
    """A client of the Valkey at ``url`` with the event stream and the dead letters emptied."""
    redis = connect(url)
    await redis.delete(STREAM_KEY, DEAD_KEY)
    return redis


async def write_events(redis: AnyRedis, events: list[bytes] | list[dict[str, Any]]) -> None:
    """Events into the stream as the edge writes them (encoded dicts, or bytes as they are)."""
    pipe = redis.pipeline(transaction=False)
    for event in events:
        pipe.xadd(STREAM_KEY, {"e": event if isinstance(event, bytes) else encode(event)})
    await pipe.execute()
