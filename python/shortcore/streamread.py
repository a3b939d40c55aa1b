"""The sink's reads of new stream entries: ``XREAD`` on a raw connection of the sink's own, its
reply handed as bytes to :class:`~shortcore._core.StreamEntries`, which finds the entries in
Rust. A batch of 20,000 entries built as redis-py reply objects (lists of tuples of bytes) cost
the sink about a third of its time; here no Python object is made per entry.

A Redis Cluster client has no single connection to reuse: :func:`client_url` gives ``None`` and
the sink reads through the client instead.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from shortcore._core import StreamEntries
from shortcore.backlog import STREAM_KEY
from shortcore.events import RespConnection, encode_command

#: Bytes read from the socket at once: a batch's reply is megabytes.
READ_BUFFER: Final = 4 << 20


def client_url(client: Any) -> str | None:
    """The URL of a plain redis-py asyncio client's server (with its credentials and database),
    or ``None`` for a cluster client."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return None
    kwargs = pool.connection_kwargs
    username, password = kwargs.get("username"), kwargs.get("password")
    auth = quote(username or "", safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    if auth:
        auth += "@"
    db = int(kwargs.get("db") or 0)
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        return f"unix://{auth}{kwargs['path']}?db={db}"
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    host = str(kwargs.get("host") or "127.0.0.1")
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{auth}{host}:{int(kwargs.get('port') or 6379)}/{db}"


class StreamReader:
    """``XREAD`` of ``sc:{events}`` into :class:`~shortcore._core.StreamEntries`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self._conn = RespConnection(url, timeout, commit_script=False, buffer=READ_BUFFER)
        self._key = STREAM_KEY.encode()

    async def read(self, into: StreamEntries, after: bytes, count: int, block_ms: int | None) -> int:
        """Appends up to ``count`` entries after id ``after`` to ``into``, waiting up to
        ``block_ms`` for the first; returns how many came."""
        args = [b"XREAD", b"COUNT", b"%d" % count]
        if block_ms is not None:
            args += [b"BLOCK", b"%d" % block_ms]
        args += [b"STREAMS", self._key, after]
        before = len(into)
        timeout = self._conn.timeout + (block_ms or 0) / 1000
        try:
            await self._conn.call_raw(encode_command(args), into.feed, timeout)
        except BaseException:
            into.abandon()
            raise
        return len(into) - before

    def close(self) -> None:
        self._conn.close()
