"""The event sink: Redis stream → chDB, events per second, against a plain column insert.

* ``sink.events_per_s`` — events written to the stream beforehand, then drained by one sink
  (read, check, enrich, sequence rules, insert, acknowledge, trim) into chDB;
* ``sink.baseline_column_insert_per_s`` — the same events as ready-made columns inserted with
  clickhouse-connect's ``client.insert(column_oriented=True)`` (no Redis, no checks), in batches
  of the sink's size and with its insert settings: what a plain insert costs;
* ``sink.ratio_vs_column_insert`` — the first over the second;
* ``sink.cpu_per_wall`` — CPU seconds of the sink's process per second of the drain (1.0 = one
  core busy; chDB's insert and merge threads can take it past 1.0);
* ``sink.one_core_events_per_s`` — the same drain with the whole process (chDB's threads included)
  confined to CPU 0 by ``taskset`` and Valkey on CPU 1, with its own column-insert baseline under
  the same confinement (``sink.one_core_baseline_column_insert_per_s``, ``…_ratio_vs_column_insert``);
* ``sink.one_core_variant_campaigns_events_per_s`` — the same one-core drain with the events'
  campaigns registered as A/B campaigns, so the sink gives every event its recipient's variant
  (one keyed hash each); ``…_vs_one_text`` is its ratio to ``sink.one_core_events_per_s``;
* ``sink.click_to_stats_median_s`` / ``p90`` — while a writer keeps ``LOAD`` events a second
  coming, the time from writing a click to seeing it in ``events FINAL``.

Runs in a child process: chDB opens one data directory per process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LOAD = 20_000  # events per second during the latency measurement


def run(quick: bool) -> dict[str, float]:
    n = 60_000 if quick else 300_000
    figures = _run_child([str(n), "--latency-seconds", "4" if quick else "15"])
    # Again with the sink's process (chDB's threads included) confined to CPU 0 and Valkey on CPU 1:
    # the "on one core", whatever chDB's merge threads would otherwise take from the other.
    if shutil.which("taskset") is not None:
        figures.update(_run_child([str(n), "--one-core"], prefix=["taskset", "-c", "0"]))
        figures.update(_run_child([str(n), "--one-core", "--variants"], prefix=["taskset", "-c", "0"]))
        figures["sink.one_core_variant_campaigns_vs_one_text"] = (
            figures["sink.one_core_variant_campaigns_events_per_s"] / figures["sink.one_core_events_per_s"]
        )
    return figures


def _run_child(args: list[str], prefix: list[str] | None = None) -> dict[str, float]:
    command = [*(prefix or []), sys.executable, str(Path(__file__).resolve()), "--child", *args]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench_sink child failed:\n{out.stderr[-4000:]}")
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def _child(n: int, latency_seconds: float, one_core: bool = False, variants: bool = False) -> dict[str, float]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    import orjson

    from shortcore.analytics import DATABASE, AnalyticsStore
    from shortcore.sink import INSERT_SETTINGS, STREAM_KEY, EventSink, SinkSettings, stream_backlog
    from shortcore.store import EmbeddedStore, connect

    from sinkdata import bulk, click

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="shortcore-bench-sink-") as tmp:
        store = EmbeddedStore(Path(tmp))
        url = store.start()
        if one_core:
            assert store._process is not None
            os.sched_setaffinity(store._process.pid, {1})
        analytics = AnalyticsStore.open(f"chdb://{tmp}/clickhouse")
        events = bulk(n)
        if variants:
            _variant_campaigns(analytics.client, [f"cmp_{i:016x}" for i in range(50)])  # bulk()'s campaigns
        try:

            async def drain() -> None:
                redis = connect(url)
                for start in range(0, n, 20_000):
                    pipe = redis.pipeline(transaction=False)
                    for event in events[start : start + 20_000]:
                        pipe.xadd(STREAM_KEY, {"e": event})
                    await pipe.execute()
                sink = EventSink(redis, analytics, SinkSettings())
                stop = asyncio.Event()
                cpu, wall = time.process_time(), time.perf_counter()
                task = asyncio.create_task(sink.run(stop))
                while sink.status.inserted < n:
                    await asyncio.sleep(0.005)
                    if task.done():
                        task.result()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                stop.set()
                await task
                figures["sink.events_per_s"] = n / wall
                figures["sink.cpu_per_wall"] = cpu / wall
                if one_core:
                    await redis.aclose()
                    return

                # Latency under load: LOAD events a second, a marked click every 0.1 s.
                stop = asyncio.Event()
                task = asyncio.create_task(EventSink(redis, analytics, SinkSettings()).run(stop))
                latencies: list[float] = []
                pending: dict[str, float] = {}
                filler = bulk(LOAD // 10, campaigns=500)
                started = time.monotonic()
                tick = 0
                while time.monotonic() - started < latency_seconds:
                    tick += 1
                    marker = f"cmp_bench{tick:011d}"
                    pipe = redis.pipeline(transaction=False)
                    for event in filler:
                        pipe.xadd(STREAM_KEY, {"e": event})
                    pipe.xadd(STREAM_KEY, {"e": orjson.dumps(click(marker, 0))})
                    await pipe.execute()
                    pending[marker] = time.monotonic()

                    def seen(client: Any, markers: list[str]) -> set[str]:
                        rows = client.query(
                            f"SELECT DISTINCT campaign_id FROM {DATABASE}.events FINAL WHERE campaign_id IN %(m)s",
                            parameters={"m": markers},
                        ).result_rows
                        return {row[0] for row in rows}

                    for found in await analytics.run(seen, list(pending)):
                        latencies.append(time.monotonic() - pending.pop(found))
                    await asyncio.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
                deadline = time.monotonic() + 10
                while pending and time.monotonic() < deadline:
                    for found in await analytics.run(seen, list(pending)):
                        latencies.append(time.monotonic() - pending.pop(found))
                    await asyncio.sleep(0.02)
                stop.set()
                await task
                assert (await stream_backlog(redis)).events == 0
                await redis.aclose()
                latencies.sort()
                figures["sink.click_to_stats_median_s"] = statistics.median(latencies)
                figures["sink.click_to_stats_p90_s"] = latencies[int(len(latencies) * 0.9)]
                figures["sink.latency_load_events_per_s"] = float(LOAD)

            asyncio.run(drain())
            if variants:  # every event got its recipient's variant
                named = analytics.client.query(f"SELECT countIf(variant != '') FROM {DATABASE}.events").result_rows
                assert named[0][0] == n, named

            # Baseline: the same events as columns, one clickhouse-connect insert per sink batch.
            parsed = [orjson.loads(e) for e in events]
            columns = [
                "event_id", "time", "type", "outcome", "account", "campaign_id", "domain", "token", "recipient_index",
                "link_index", "class", "reason", "edge_class", "edge_reason", "method", "ip", "user_agent", "headers",
                "browser", "os", "device", "click_id",
            ]  # fmt: skip
            import datetime as dt
            import uuid

            def as_columns(chunk: list[dict[str, Any]]) -> list[list[Any]]:
                out: list[list[Any]] = []
                for name in columns:
                    if name == "event_id":
                        out.append([uuid.UUID(e["event_id"]) for e in chunk])
                    elif name == "time":
                        out.append([dt.datetime.fromtimestamp(e["time"] / 1000, dt.UTC) for e in chunk])
                    elif name in ("edge_class", "edge_reason"):
                        out.append([e[name.removeprefix("edge_")] for e in chunk])
                    else:
                        out.append([e[name] for e in chunk])
                return out

            size = SinkSettings().batch_size
            chunks = [as_columns(parsed[s : s + size]) for s in range(0, n, size)]
            analytics.client.command(f"CREATE TABLE {DATABASE}.events_baseline AS {DATABASE}.events")
            started = time.perf_counter()
            for chunk in chunks:
                analytics.client.insert(
                    f"{DATABASE}.events_baseline",
                    chunk,
                    column_names=columns,
                    column_oriented=True,
                    settings=INSERT_SETTINGS,
                )
            figures["sink.baseline_column_insert_per_s"] = n / (time.perf_counter() - started)
            figures["sink.ratio_vs_column_insert"] = (
                figures["sink.events_per_s"] / figures["sink.baseline_column_insert_per_s"]
            )
        finally:
            analytics.close()
            store.stop()
    if variants:
        return {
            "sink.one_core_variant_campaigns_events_per_s": figures["sink.events_per_s"],
            "sink.one_core_variant_campaigns_ratio_vs_column_insert": figures["sink.ratio_vs_column_insert"],
        }
    if one_core:
        return {
            "sink.one_core_events_per_s": figures["sink.events_per_s"],
            "sink.one_core_baseline_column_insert_per_s": figures["sink.baseline_column_insert_per_s"],
            "sink.one_core_ratio_vs_column_insert": figures["sink.ratio_vs_column_insert"],
        }
    return figures


def _variant_campaigns(client: Any, campaigns: list[str]) -> None:
    """``campaigns`` as A/B campaigns of two variants of one link each, as campaign creation
    stores them."""
    import datetime as dt

    import orjson

    from shortcore.analytics import DATABASE
    from shortcore.variants import new_seed

    columns = ["id", "account", "name", "text", "domain", "seq_start", "recipients", "links", "destinations",
               "utm", "click_param", "sent_at", "expires_at", "created_at", "version", "variants"]  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    rows = []
    for campaign in campaigns:
        plan = {
            "seed": new_seed(),
            "variants": [
                {"name": name, "weight": 1, "text": "t", "destinations": [f"https://{name}.example"]}
                for name in ("A", "B")
            ],
        }
        rows.append([campaign, "acc_test", campaign, "t", "ul.example", 0, 10_000_000, 1, ["https://A.example"], {},
                     False, None, None, now, 1, orjson.dumps(plan).decode()])  # fmt: skip
    client.insert(f"{DATABASE}.campaigns", rows, column_names=columns)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        if sys.argv[3:4] == ["--one-core"]:
            print(json.dumps(_child(int(sys.argv[2]), 0.0, one_core=True, variants="--variants" in sys.argv)))
        else:
            seconds = float(sys.argv[4]) if len(sys.argv) >= 5 else 4.0
            print(json.dumps(_child(int(sys.argv[2]), seconds)))
    else:
        sys.path.insert(0, str(HERE))
        from common import require_release_build

        require_release_build()
        for key, value in run(quick="--full" not in sys.argv).items():
            print(f"{key:36} {value:>14,.3f}")
    sys.stdout.flush()
