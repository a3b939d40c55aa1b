"""Webhook deliveries per second to a local receiver.

A receiver process on loopback (uvloop, httptools, one 200 per request) takes the deliveries.
``webhooks.deliveries_per_s`` is the sender's rate: deliveries already in the Redis outbox, one
event each, claimed, signed, sent on keep-alive connections, answered and settled. The baseline
in the same run is a bare client loop: the same number of requests with the same connections to
the same receiver, bodies prepared in advance, no Redis, no signing. ``webhooks.vs_bare_client``
is the ratio. ``webhooks.enqueue_per_s`` is the rate at which the sink's output becomes
deliveries (payload, outbox).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _receiver(port_out: Any, ready: Any) -> None:
    import httptools
    import uvloop

    class Protocol(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.transport: Any = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", 0)
        port_out.value = server.sockets[0].getsockname()[1]
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(main())


async def _bare(port: int, n: int, connections: int) -> float:
    """The baseline: ``connections`` keep-alive connections, each sending its share in a loop."""
    from shortcore.webhooks import HttpConnection

    body = b'{"id":"x","type":"click"}' * 12
    head = (
        f"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def worker(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = HttpConnection(reader, writer)
        for _ in range(count):
            assert await conn.post(head, body, 10.0) == 200
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(n // connections) for _ in range(connections)))
    return (n // connections * connections) / (time.perf_counter() - started)


async def _sender(redis_url: str, port: int, n: int, connections: int) -> tuple[float, float]:
    import orjson

    from shortcore.events import EventIds
    from shortcore.sink import Row
    from shortcore.store import connect
    from shortcore.webhooks import WebhookService, WebhookSettings, create_endpoint

    redis = connect(redis_url)
    await redis.flushdb()
    settings = WebhookSettings(allow="127.0.0.1/32", connections=connections, concurrency=connections * 4, poll=0.01)
    service = WebhookService(redis, None, settings)
    await create_endpoint(redis, service.sender.guard, "acc_bench", f"http://127.0.0.1:{port}/hook", ["click"])
    ids = EventIds()
    now = time.time()
    rows = []
    for i in range(n):
        event = {
            "v": 1, "event_id": ids.new(now), "time": int(now * 1000), "type": "click", "outcome": "ok",
            "account": "acc_bench", "campaign_id": "", "recipient_index": i, "link_index": 0, "class": "human",
            "reason": "ok", "browser": "Safari", "os": "iOS", "device": "mobile",
        }  # fmt: skip
        rows.append(Row(b"0-1", orjson.dumps(event), event))
    started = time.perf_counter()
    for start in range(0, n, 5000):
        await service.after_insert(rows[start : start + 5000])
    enqueue_rate = n / (time.perf_counter() - started)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(service.run(stop))
    while service.sender.status.delivered < n:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert service.sender.status.failed_attempts == 0
    await redis.flushdb()
    await redis.aclose()
    return n / elapsed, enqueue_rate


def run(quick: bool) -> dict[str, float]:
    import uvloop

    from shortcore.store import EmbeddedStore

    n = 20_000 if quick else 100_000
    connections = 8
    ctx = multiprocessing.get_context("spawn")
    port, ready = ctx.Value("i", 0), ctx.Event()
    receiver = ctx.Process(target=_receiver, args=(port, ready), daemon=True)
    receiver.start()
    store = EmbeddedStore(Path(tempfile.mkdtemp(prefix="bench-webhooks-")))
    try:
        if not ready.wait(30):
            raise SystemExit("the receiver did not start")
        url = store.start()
        bare = uvloop.run(_bare(port.value, n, connections))
        rate, enqueue = uvloop.run(_sender(url, port.value, n, connections))
    finally:
        store.stop()
        receiver.terminate()
        receiver.join(5)
    return {
        "webhooks.deliveries_per_s": rate,
        "webhooks.bare_client_per_s": bare,
        "webhooks.vs_bare_client": rate / bare,
        "webhooks.enqueue_per_s": enqueue,
    }


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for key, value in run(quick="--full" not in sys.argv).items():
        print(f"{key:34} {value:>14,.1f}")
