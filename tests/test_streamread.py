"""The sink's raw stream reads: the URL of a redis-py client, and replies split in Rust."""

from __future__ import annotations

import asyncio

import pytest

from shortcore._core import StreamEntries
from shortcore.backlog import STREAM_KEY
from shortcore.events import _parse_url
from shortcore.store import connect
from shortcore.streamread import StreamReader, client_url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://user:p%40ss%3Aw%2Frd@cache.example:6380/3",
        "redis://:secret@[::1]:6379/1",
        "rediss://cache.example:6390/0",
        "unix:///tmp/valkey.sock?db=2",
        "unix://:p%40ss@/tmp/valkey.sock?db=0",
    ],
)
def test_client_url_reaches_the_same_server(url: str) -> None:
    client = connect(url)
    again = client_url(client)
    assert again is not None
    assert _parse_url(again) == _parse_url(url)


def test_a_cluster_client_has_no_single_url() -> None:
    assert client_url(object()) is None


def _reply(entries: list[tuple[bytes, list[bytes]]]) -> bytes:
    def bulk(data: bytes) -> bytes:
        return b"$%d\r\n%b\r\n" % (len(data), data)

    out = [b"*1\r\n*2\r\n", bulk(STREAM_KEY.encode()), b"*%d\r\n" % len(entries)]
    for stream_id, fields in entries:
        out += [b"*2\r\n", bulk(stream_id), b"*%d\r\n" % len(fields), *map(bulk, fields)]
    return b"".join(out)


def test_replies_fed_in_pieces() -> None:
    first = _reply([(b"1-0", [b"e", b'{"a":1}']), (b"1-1", [b"x", b"y", b"e", b"\r\n$5\r\n"])])
    second = _reply([(b"2-0", [b"other", b"z"])])
    entries = StreamEntries()
    for reply, step in ((first, 7), (second, 3)):
        complete = [entries.feed(reply[i : i + step]) for i in range(0, len(reply), step)]
        assert complete[-1] and not any(complete[:-1])
    assert len(entries) == 3
    assert entries[0] == (b"1-0", [b"e", b'{"a":1}'])
    assert entries[1] == (b"1-1", [b"e", b"\r\n$5\r\n"])
    assert entries[-1] == (b"2-0", []) and entries.id(-1) == b"2-0"
    with pytest.raises(IndexError):
        entries[3]
    with pytest.raises(IndexError):
        entries.id(-4)


def test_nil_error_and_garbage_replies() -> None:
    entries = StreamEntries()
    assert entries.feed(b"*-1\r\n") and len(entries) == 0
    with pytest.raises(ConnectionError, match="WRONGTYPE"):
        entries.feed(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
    with pytest.raises(ConnectionError, match="not a RESP reply"):
        entries.feed(b"hello\r\n")
    with pytest.raises(ConnectionError, match="after the end"):
        entries.feed(b"*0\r\n*0\r\n")
    assert not entries.feed(b"*1\r\n*2\r\n$3\r\nabc")
    entries.abandon()  # the connection broke half way: the next reply starts afresh
    assert entries.feed(b"*0\r\n") and len(entries) == 0


def test_reads_from_a_real_server(redis_url: str) -> None:
    async def go() -> None:
        redis = connect(redis_url)
        await redis.delete(STREAM_KEY)
        ids = [await redis.xadd(STREAM_KEY, {"e": f'{{"n":{i}}}'}) for i in range(5)]
        url = client_url(redis)
        assert url is not None
        reader = StreamReader(url)
        try:
            entries = StreamEntries()
            assert await reader.read(entries, b"0-0", 3, None) == 3
            assert await reader.read(entries, entries.id(-1), 10, 50) == 2
            assert await reader.read(entries, entries.id(-1), 10, 50) == 0  # BLOCK timed out: a nil reply
            assert [entries.id(i) for i in range(len(entries))] == ids
            assert entries[4][1] == [b"e", b'{"n":4}']
        finally:
            reader.close()
            await redis.delete(STREAM_KEY)
            await redis.aclose()

    asyncio.run(go())
