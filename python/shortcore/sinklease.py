"""One active sink at a time: a lease in Redis, ``sc:{events}:sink``, holding the active sink's
consumer name and expiring unless renewed.

Two control processes (``shortcore serve`` at scale) would otherwise both read and insert every
batch: still exactly once (see :mod:`shortcore.sink`), but twice the work. The sink that takes the
lease (``SET NX PX``) works and renews it every third of its time to live; the others stand by,
try again as often, and take over once it lapses (a holder that died or lost Redis). A holder that
stops releases the lease, so a standby takes over at its next try. Losing the lease never risks
an event: a sink that finds another holder on renewal finishes its batch and stands by, and two
sinks working at once for a moment still insert each event once.

The key shares the stream's hash tag, so on a Redis Cluster it lives on the stream's node.
"""

from __future__ import annotations

import logging
from typing import Final

from shortcore.store import AnyRedis

log = logging.getLogger(__name__)

LEASE_KEY: Final = "sc:{events}:sink"

#: Renews the lease if ``ARGV[1]`` holds it: 1, else 0.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: Deletes the lease if ``ARGV[1]`` holds it.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SinkLease:
    """The lease as seen by the sink named ``holder``."""

    def __init__(self, redis: AnyRedis, holder: str, ttl: float = 10.0) -> None:
        if ttl <= 0:
            raise ValueError("the sink lease's time to live must be positive")
        self.redis = redis
        self.holder = holder
        self.ttl_ms = max(int(ttl * 1000), 1)

    @property
    def interval(self) -> float:
        """Seconds between renewals (the holder) and between tries (a standby)."""
        return self.ttl_ms / 3000

    async def acquire(self) -> bool:
        """Takes the lease if nobody holds it, or renews it if we do; whether we hold it now."""
        if await self.redis.set(LEASE_KEY, self.holder, nx=True, px=self.ttl_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        """Extends the lease if we hold it; whether we do."""
        return bool(await self.redis.eval(_RENEW, 1, LEASE_KEY, self.holder, str(self.ttl_ms)))

    async def release(self) -> None:
        """Gives the lease up if we hold it, so a standby need not wait for it to lapse."""
        await self.redis.eval(_RELEASE, 1, LEASE_KEY, self.holder)

    async def current(self) -> str | None:
        """Who holds the lease, if anyone."""
        value = await self.redis.get(LEASE_KEY)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
