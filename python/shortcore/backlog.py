"""What waits for the sink: events in the stream ``sc:{events}`` not yet acknowledged by its
consumer group, and the age of the oldest one.

Read from the stream alone (``XINFO GROUPS`` lag and pending, ``XPENDING``, the first entry id
carries its time), so any process that reaches Redis can show it: the sink itself, and the edge's
``/metrics`` and ``/healthz`` through :class:`BacklogCache`, which asks Redis at most once a second
however often it is scraped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

from shortcore.store import AnyRedis

# Must match shortcore.events (the edge's writer) and shortcore.sink (the reader).
STREAM_KEY: Final = "sc:{events}"
GROUP: Final = "sink"


@dataclass(frozen=True, slots=True)
class Backlog:
    """Events of the stream not yet acknowledged by the sink, and the age of the oldest one."""

    events: int
    oldest_seconds: float


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_ms(stream_id: Any) -> int:
    return int(_str(stream_id).split("-", 1)[0])


async def stream_backlog(redis: AnyRedis, group: str = GROUP, now: float | None = None) -> Backlog:
    """The backlog from the stream alone: pending entries plus those not yet delivered to the
    group. Usable from any process that can reach Redis (the edge's ``/metrics``)."""
    now = time.time() if now is None else now
    try:
        groups = await redis.xinfo_groups(STREAM_KEY)
    except Exception as error:  # no stream yet
        if "no such key" in str(error).lower():
            return Backlog(0, 0.0)
        raise
    info = next((g for g in groups if _str(g.get("name")) == group), None)
    if info is None:
        length = await redis.xlen(STREAM_KEY)
        first = await redis.xrange(STREAM_KEY, count=1) if length else []
        age = now - _id_ms(first[0][0]) / 1000 if first else 0.0
        return Backlog(int(length), max(age, 0.0))
    pending = int(info.get("pending") or 0)
    lag = info.get("lag")
    if lag is None:  # Redis < 7, or a lag Redis cannot tell: the sink trims the stream to its backlog
        lag = max(int(await redis.xlen(STREAM_KEY)) - pending, 0)
    oldest_ms: int | None = None
    if pending:
        summary = await redis.xpending(STREAM_KEY, group)
        if summary.get("min"):
            oldest_ms = _id_ms(summary["min"])
    if oldest_ms is None and lag:
        following = await redis.xrange(STREAM_KEY, min=f"({_str(info['last-delivered-id'])}", count=1)
        if following:
            oldest_ms = _id_ms(following[0][0])
    age = max(now - oldest_ms / 1000, 0.0) if oldest_ms is not None else 0.0
    return Backlog(pending + int(lag), age)


class BacklogCache:
    """:func:`stream_backlog` for a process that reports it on request: at most one read of Redis
    per ``max_age`` seconds, concurrent callers share it, and a failed read keeps the last figure
    (``known`` tells whether the last read succeeded)."""

    def __init__(self, redis: AnyRedis, max_age: float = 1.0, timeout: float = 1.0) -> None:
        self.redis = redis
        self.max_age = max_age
        self.timeout = timeout
        self.backlog: Backlog | None = None
        self.known = False
        self._read_at = -float("inf")
        self._reading: asyncio.Future[None] | None = None

    async def get(self) -> Backlog | None:
        """The backlog as of at most ``max_age`` seconds ago, or None if never read."""
        if time.monotonic() - self._read_at < self.max_age:
            return self.backlog
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        reading = self._reading
        await asyncio.shield(reading)
        return self.backlog

    async def _read(self) -> None:
        try:
            # The backlog's age is taken as of the read, so a cached figure is at most max_age old.
            self.backlog = await asyncio.wait_for(stream_backlog(self.redis), self.timeout)
            self.known = True
        except Exception:  # Redis down or slow: report the last figure, marked unknown
            self.known = False
        finally:
            self._read_at = time.monotonic()
            self._reading = None
