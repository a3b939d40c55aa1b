from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
from edge_helpers import BROWSER_HEADERS, SECRET, edge

from shortcore import routing
from shortcore.events import STREAM_KEY, EventIds, EventSpool, _replay_batches, encode_command
from shortcore.store import EmbeddedStore, connect
from shortcore.tokens import TokenCodec


def test_event_ids_are_unique_uuid7_in_time_order() -> None:
    ids = EventIds()
    made = [ids.new(1_700_000_000.0 + i / 1000) for i in range(10_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    parsed = uuid.UUID(made[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert EventIds().new(1.0) != EventIds().new(1.0)  # another process, another prefix


def test_resp_encoding() -> None:
    assert encode_command([b"SET", b"k", b"v\r\n"]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"


def test_replay_file_batches(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    spool.append([b'{"a":1}', b'{"a":2}'], "w1:7")
    spool.append([b'{"a":3}'], "")
    spool.append([b'{"a":4}'], "w1:8")
    spool.close()
    path = next(tmp_path.glob("spool-*.jsonl"))
    with path.open("ab") as f:
        f.write(b'\t{"torn')  # a crash in the middle of a write
    [replay] = EventSpool(tmp_path).replayable()
    batches = _replay_batches(replay)
    name = "replay:" + replay.name.removeprefix("replay-").removesuffix(".jsonl")
    assert batches == [
        ("w1", 7, [b'{"a":1}', b'{"a":2}']),
        (name, 0, [b'{"a":3}']),
        ("w1", 8, [b'{"a":4}']),
    ]


def test_redis_down_mid_load_every_event_exactly_once(tmp_path: Path) -> None:
    """Stop the server in the middle of a load, keep clicking, start it again: every event is in
    the stream once, and every click was redirected."""
    store = EmbeddedStore(tmp_path / "store")
    url = store.start()
    codec = TokenCodec(SECRET.encode(), 7)

    async def main() -> None:
        async with edge(url, tmp_path / "edge", event_timeout=1.0) as (state, client):
            c = await routing.register_campaign(
                state.redis, id="spool", account="a", domain="ul.example", recipients=50,
                destinations=["https://a.example/x"],
            )  # fmt: skip
            tokens = [codec.encode(c.seq(r, 0)) for r in range(50)]
            statuses: list[int] = []

            async def clicks(n: int, offset: int) -> None:
                for i in range(n):
                    r = await client.get(f"/{tokens[(offset + i) % 50]}", headers=BROWSER_HEADERS)
                    statuses.append(r.status_code)

            async def stop_soon() -> None:
                await asyncio.sleep(0.05)
                await asyncio.to_thread(store.stop)

            # Load from 8 clients while the server goes away.
            await asyncio.gather(*(clicks(40, k) for k in range(8)), stop_soon())
            # While it is down: cached campaigns still redirect; events go to the spool.
            await asyncio.gather(*(clicks(20, k) for k in range(8)))
            assert state.writer.spooled > 0
            await asyncio.to_thread(store.start)
            await asyncio.gather(*(clicks(10, k) for k in range(8)))
            total = len(statuses)
            assert statuses == [302] * total
            redis = connect(url)
            try:
                for _ in range(200):
                    if await redis.xlen(STREAM_KEY) >= total and not list((tmp_path / "edge/spool").glob("replay-*")):
                        break
                    await asyncio.sleep(0.05)
                entries = await redis.xrange(STREAM_KEY)
            finally:
                await redis.aclose()
            ids = [orjson.loads(fields[b"e"])["event_id"] for _, fields in entries]
            w = state.writer
            detail = (
                w.committed,
                w.spooled,
                w.replayed,
                w.failures,
                sorted(p.name for p in (tmp_path / "edge/spool").iterdir()),
            )
            assert len(ids) == total, detail
            assert len(set(ids)) == total

    try:
        asyncio.run(main())
    finally:
        store.stop()


def test_spool_left_by_a_dead_process_is_replayed_at_start(tmp_path: Path, redis_url: str) -> None:
    spool_dir = tmp_path / "edge" / "spool"
    orphan = EventSpool(spool_dir)
    events = [orjson.dumps({"v": 1, "event_id": f"orphan-{i}-{tmp_path.name}"}) for i in range(3)]
    orphan.append(events, "")
    orphan.close()  # the lock goes with the process

    async def main() -> None:
        async with edge(redis_url, tmp_path / "edge") as (state, _client):
            for _ in range(100):
                if not list(spool_dir.glob("*.jsonl")):
                    break
                await asyncio.sleep(0.05)
            entries = await state.redis.xrange(STREAM_KEY)
            ids = {orjson.loads(fields[b"e"])["event_id"] for _, fields in entries}
            assert {orjson.loads(e)["event_id"] for e in events} <= ids
            assert not list(spool_dir.glob("*.jsonl"))

    asyncio.run(main())
