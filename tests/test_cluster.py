"""The edge and the sink on a real Redis Cluster: three Valkey nodes started here, slots split
between them, reached through a ``redis+cluster://`` URL. Every key the edge and the sink use is
single-slot (the event stream and its commit record share the ``{events}`` hash tag)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from clickhouse_connect.driver.client import Client
from edge_helpers import BROWSER_HEADERS, SECRET, edge

from shortcore import routing
from shortcore.analytics import DATABASE, AnalyticsStore, migrate
from shortcore.events import STREAM_KEY
from shortcore.sink import EventSink, SinkSettings, stream_backlog
from shortcore.store import connect, server_binary
from shortcore.tokens import TokenCodec

CODEC = TokenCodec(SECRET.encode(), 7)
SLOTS = 16384


def _node_port() -> int:
    """A port whose cluster bus port (+10,000) is free too, so at most 55,535."""
    for _ in range(200):
        port = random.randrange(20_000, 55_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports")


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three master nodes covering all 16,384 slots."""
    base = tmp_path_factory.mktemp("cluster")
    ports = [_node_port() for _ in range(3)]
    processes = []
    for port in ports:
        node = base / str(port)
        node.mkdir()
        args = [
            str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--dir", str(node), "--save", "", "--appendonly", "no",
            "--logfile", "server.log",
        ]  # fmt: skip
        processes.append(subprocess.Popen(args, cwd=node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        clients = [redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in ports]
        deadline = time.monotonic() + 20
        while True:
            try:
                for c in clients:
                    c.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        share = SLOTS // 3
        for i, c in enumerate(clients):
            last = SLOTS - 1 if i == 2 else (i + 1) * share - 1
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        deadline = time.monotonic() + 30
        while not all(c.cluster("INFO")["cluster_state"] == "ok" for c in clients):
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.1)
        for c in clients:
            c.close()
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


async def _events(state: Any, campaign_id: str) -> list[dict[str, Any]]:
    entries = await state.redis.xrange(STREAM_KEY)
    events = [orjson.loads(fields[b"e"]) for _, fields in entries]
    return [e for e in events if e.get("campaign_id") == campaign_id]


def test_keys_spread_over_the_nodes(cluster_url: str) -> None:
    """A sanity check of the set-up: the routing keys and the stream live on different nodes."""

    async def main() -> None:
        client = connect(cluster_url)
        try:
            await client.initialize()
            nodes = {client.get_node_from_key(key).name for key in (routing.SEQ_KEY, routing.RANGES_KEY, STREAM_KEY)}
            assert len(client.get_nodes()) == 3 and len(nodes) >= 2
        finally:
            await client.aclose()

    asyncio.run(main())


def test_redirects_record_events_and_follow_updates(cluster_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with edge(cluster_url, tmp_path) as (state, client):
            campaign = await routing.register_campaign(
                state.redis, id="cl-1", account="acc-cl", domain="ul.example", recipients=50,
                destinations=["https://shop.example/a", "https://shop.example/b?x=1"],
                utm={"source": "sms"}, sent_at=time.time() - 3600,
            )  # fmt: skip
            tokens = [CODEC.encode(campaign.seq(r, link)) for r in range(50) for link in range(2)]
            # Concurrent requests share group-commit batches on the cluster path too.
            answers = await asyncio.gather(*(client.get(f"/{t}", headers=BROWSER_HEADERS) for t in tokens))
            assert [a.status_code for a in answers] == [302] * len(tokens)
            assert answers[1].headers["location"].startswith("https://shop.example/b?x=1&utm_source=sms&sc_click=")
            events = await _events(state, "cl-1")
            assert sorted((e["recipient_index"], e["link_index"]) for e in events) == [
                (r, link) for r in range(50) for link in range(2)
            ]
            assert len({e["event_id"] for e in events}) == len(tokens)

            # An expiry set by the control side reaches the edge's cache (cluster clients poll the
            # version key instead of subscribing).
            expired = dataclasses.replace(campaign, expires_at=time.time() - 1)
            await routing.update_campaign(state.redis, expired)
            deadline = time.monotonic() + 10
            status = 302
            while status == 302 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                status = (await client.get(f"/{tokens[0]}", headers=BROWSER_HEADERS)).status_code
            assert status == 404

    asyncio.run(main())


def test_sink_reads_the_stream_on_a_cluster(cluster_url: str, tmp_path: Path, chdb_client: Client) -> None:
    migrate(chdb_client)
    analytics = AnalyticsStore(chdb_client)

    async def main() -> None:
        async with edge(cluster_url, tmp_path) as (state, client):
            campaign = await routing.register_campaign(
                state.redis, id="cl-sink", account="acc-cl", domain="ul.example", recipients=20,
                destinations=["https://shop.example/a"], sent_at=time.time() - 3600,
            )  # fmt: skip
            for r in range(20):
                assert (await client.get(f"/{CODEC.encode(campaign.seq(r, 0))}")).status_code == 302
            # The control process's own client: the edge's times out faster than the sink blocks.
            sink_redis = connect(cluster_url)
            sink = EventSink(sink_redis, analytics, SinkSettings())
            stop = asyncio.Event()
            task = asyncio.create_task(sink.run(stop))
            try:
                deadline = time.monotonic() + 30
                while (await stream_backlog(state.redis)).events and time.monotonic() < deadline:
                    assert not task.done() or task.result() is None
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await task
                sink.close()
                await sink_redis.aclose()
        rows = chdb_client.query(
            f"SELECT count(), uniqExact(event_id) FROM {DATABASE}.events FINAL WHERE campaign_id = 'cl-sink'"
        ).result_rows
        assert rows == [(20, 20)]

    try:
        asyncio.run(main())
    finally:
        analytics._executor.shutdown(wait=True)
