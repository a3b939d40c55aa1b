"""Prometheus figures of the edge.

The hot path only adds to plain integers in :class:`EdgeStats` (a labelled prometheus-client
counter costs microseconds a call); a custom collector turns them into metric families when
``/metrics`` is scraped. With several worker processes each one writes its figures to
``<data_dir>/metrics/<pid>.json`` every couple of seconds, and a scrape (answered by whichever
worker gets it) adds up the files of the workers still alive. The sink's backlog is a figure of
the shared stream, so it is shown as the answering worker last read it (at most a second old).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shortcore.backlog import BacklogCache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EdgeStats:
    """Counters of one edge process. ``requests`` is keyed by ``(type, outcome, class)``."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str]] = Counter()
        self.rate_limited = 0

    def snapshot(self, writer: Any, cache_size: int) -> dict[str, Any]:
        return {
            "requests": [[*key, n] for key, n in self.requests.items()],
            "rate_limited": self.rate_limited,
            "events_committed": writer.committed if writer else 0,
            "events_spooled": writer.spooled if writer else 0,
            "events_replayed": writer.replayed if writer else 0,
            "event_batches": writer.batches if writer else 0,
            "store_up": 1 if writer is not None and writer.up else 0,
            "spool_pending": writer.spool.pending if writer else 0,
            "cached_campaigns": cache_size,
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StatsDirectory:
    """Where worker processes leave their figures for each other."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.path = directory / f"{os.getpid()}.json"

    def write(self, snapshot: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(snapshot))
        tmp.replace(self.path)

    def others(self) -> Iterator[dict[str, Any]]:
        if not self.dir.is_dir():
            return
        for path in self.dir.glob("*.json"):
            if path == self.path:
                continue
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                yield orjson.loads(path.read_bytes())

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"requests": Counter()}
    for snap in snapshots:
        for typ, outcome, label, n in snap.get("requests", []):
            total["requests"][(typ, outcome, label)] += n
        for key, value in snap.items():
            if key != "requests" and isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return total


class EdgeCollector(Collector):
    def __init__(self, own: Any, directory: StatsDirectory | None, backlog: BacklogCache | None = None) -> None:
        self.own = own  # a callable returning this process's snapshot
        self.directory = directory
        self.backlog = backlog  # refreshed by the /metrics handler before it renders

    def collect(self) -> Iterator[Any]:
        snaps = [self.own()]
        if self.directory is not None:
            snaps += list(self.directory.others())
        total = merge(snaps)
        requests = CounterMetricFamily(
            "shortcore_edge_requests", "Edge requests by type, outcome and class", labels=["type", "outcome", "class"]
        )
        for (typ, outcome, label), n in sorted(total["requests"].items()):
            requests.add_metric([typ, outcome, label], n)
        yield requests
        for key, help_text in (
            ("rate_limited", "Requests refused by the unknown-token limit"),
            ("events_committed", "Events acknowledged by the Redis stream"),
            ("events_spooled", "Events written to the spool while Redis was unreachable"),
            ("events_replayed", "Spooled events replayed into the stream"),
            ("event_batches", "Group-commit batches written"),
        ):
            yield CounterMetricFamily(f"shortcore_{key}", help_text, value=total.get(key, 0))
        yield GaugeMetricFamily(
            "shortcore_store_up", "Edge workers whose last event batch reached Redis", value=total.get("store_up", 0)
        )
        yield GaugeMetricFamily(
            "shortcore_spool_pending", "Events waiting in spool files", value=total.get("spool_pending", 0)
        )
        yield GaugeMetricFamily(
            "shortcore_cached_campaigns", "Campaigns in edge route caches", value=total.get("cached_campaigns", 0)
        )
        if self.backlog is not None:
            yield from _backlog_metrics(self.backlog)


def _backlog_metrics(cache: BacklogCache) -> Iterator[Any]:
    backlog = cache.backlog
    yield GaugeMetricFamily(
        "shortcore_sink_backlog_known", "1 when the sink's backlog was read from Redis just now", value=int(cache.known)
    )
    if backlog is None:
        return
    yield GaugeMetricFamily(
        "shortcore_sink_backlog", "Events in the stream not yet acknowledged by the sink", value=backlog.events
    )
    yield GaugeMetricFamily(
        "shortcore_sink_oldest_unsent_seconds",
        "Age of the oldest event in the stream not yet acknowledged by the sink",
        value=backlog.oldest_seconds,
    )


def render(collector: EdgeCollector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
