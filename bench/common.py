"""What every benchmark shares: the machine record, the release-build check, a timer, waiting for
a server to answer."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, object]:
    """Date, machine and versions, recorded beside every set of figures."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("shortcore", "starlette", "uvicorn", "redis", "sqids", "crawlerdetect", "chdb", "clickhouse-connect"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        rustc = ""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "rustc": rustc,
        "versions": versions,
    }


def require_release_build() -> None:
    """Refuses to measure a debug build of the core: its figures would mean nothing."""
    import shortcore._core as core

    if core.build_profile != "release":
        raise SystemExit("shortcore._core is a debug build; run `make build` (release) first")


def rate(work: Callable[[], object], items: int, min_seconds: float = 0.5, repeats: int = 3) -> float:
    """Items per second of ``work`` (which handles ``items`` items a call): best of ``repeats``
    runs of at least ``min_seconds`` each, so a noisy neighbour costs less."""
    best = 0.0
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            work()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, calls * items / elapsed)
    return best


def wait_until_answering(client: Any, server: subprocess.Popen[Any], seconds: float = 60) -> None:
    """Waits until the control API in ``server`` answers ``client`` (an httpx client on its URL);
    raises if it exits or ``seconds`` pass first."""
    import httpx2 as httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            client.get("/openapi.json")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)
