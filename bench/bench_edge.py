"""The edge under load: shortcore's tracked redirect against two baselines, in one run.

All three are one uvicorn worker (uvloop, httptools, no access log, no proxy-header rewriting)
pinned to CPU 0; wrk (one thread, 64 connections, a random token of a 20,000-token campaign per
request, a phone browser's headers) and the Valkey/Redis server share CPU 1.

``redirect.ceiling_rps``  Starlette answering a fixed 302: no lookup, no event (``edge_apps.py``)
``redirect.naive_rps``    per request ``await redis.get`` + ``await redis.xadd`` with redis-py
``redirect.tracked_rps``  ``shortcore.edge``: decode, route from memory, classify, event held by
                          Redis (group commit), 302 with UTM, click id and cookie
``redirect.ratio``        tracked / ceiling; ``redirect.naive_ratio`` naive / ceiling
``redirect.p99_ms``       p99 latency of the tracked runs
``redirect.cpu_ratio``    ceiling / tracked server CPU time per request (``redirect.ceiling_cpu_us``,
                          ``redirect.tracked_cpu_us``, from /proc): the same comparison, hardly
                          moved by other load on the machine
``redirect.click_id_us``  what signing the click id (``ClickIds.issue``) costs per redirect, timed
                          on CPU 0 right after the tracked run; ``redirect.click_id_share`` is that
                          over the tracked run's time per request (1 / ``tracked_rps``)
``redirect.events_ok``    1 when the stream holds at least as many events as wrk counted responses
``redirect.nginx_rps``    nginx ``return 302`` (only when nginx is installed), for scale
``redirect.granian_rps``  the tracked edge on granian instead of uvicorn (only when installed)
``redis.bytes_per_link``  Redis ``used_memory`` growth / links, registering campaigns of 10M links
                          in all (1M in quick mode): campaign-level data only, no key per link

The three servers are measured in turns, several rounds (3 of 2 s quick, 5 of 5 s full); each
figure is the median of its runs and each ratio the median of the per-round ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import require_release_build  # noqa: E402

SERVER_CPU = "0"
LOAD_CPU = "1"
CONNECTIONS = 64
SECRET = "bench-secret"
UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _server(target: str, port: int, env: dict[str, str], factory: bool = False) -> subprocess.Popen[bytes]:
    args = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "uvicorn", target, "--port", str(port)]
    args += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers"]
    args += ["--log-level", "warning"]
    if factory:
        args.append("--factory")
    process = subprocess.Popen(args, env={**os.environ, **env}, cwd=HERE)
    _wait_port(port)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk_script(directory: Path, paths: list[str]) -> Path:
    script = directory / "paths.lua"
    body = ",".join(f'"{p}"' for p in paths)
    script.write_text(
        f"local paths = {{{body}}}\n"
        f'wrk.headers["User-Agent"] = "{UA}"\n'
        'wrk.headers["Accept"] = "text/html,application/xhtml+xml"\n'
        'wrk.headers["Accept-Language"] = "en-GB,en;q=0.9"\n'
        'wrk.headers["Sec-Fetch-Mode"] = "navigate"\n'
        "math.randomseed(42)\n"
        'request = function() return wrk.format("GET", paths[math.random(#paths)]) end\n'
    )
    return script


def _wrk(port: int, script: Path, seconds: int) -> tuple[float, float, int]:
    """Requests/s, p99 in ms, and the number of responses."""
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    args += ["-s", str(script), f"http://127.0.0.1:{port}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99_match = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99_match is not None, out
    value, unit = float(p99_match.group(1)), p99_match.group(2)
    p99 = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx or 3xx" in out:
        raise RuntimeError(f"errors under load:\n{out}")
    return rps, p99, total


def _measure(port: int, script: Path, seconds: int) -> tuple[float, float, int]:
    _wrk(port, script, 1)  # warm-up
    return _wrk(port, script, seconds)


async def _setup(url: str, recipients: int) -> tuple[list[str], list[str]]:
    """Registers the bench campaign and the naive baseline's per-link keys; returns both path lists."""
    from shortcore import routing
    from shortcore.store import connect
    from shortcore.tokens import TokenCodec

    redis = connect(url)
    campaign = await routing.register_campaign(
        redis,
        id="bench",
        account="bench",
        domain="127.0.0.1",
        recipients=recipients,
        destinations=["https://shop.example/p?x=1", "https://shop.example/q#top"],
        utm={"source": "sms", "medium": "sms", "campaign": "bench"},
        sent_at=time.time() - 3600,
    )
    codec = TokenCodec(SECRET.encode(), 7)
    tokens = codec.encode_range(campaign.seq_start, campaign.seq_count)
    async with redis.pipeline(transaction=False) as pipe:
        for token in tokens:
            pipe.set(f"naive:link:{token}", "https://shop.example/p?x=1&utm_source=sms")
        await pipe.execute()
    await redis.aclose()
    return [f"/{t}" for t in tokens], [f"/{t}" for t in tokens]


async def _stream_length(url: str) -> int:
    from shortcore.events import STREAM_KEY
    from shortcore.store import connect

    redis = connect(url)
    try:
        return int(await redis.xlen(STREAM_KEY))
    finally:
        await redis.aclose()


async def _bytes_per_link(url: str, links: int) -> float:
    from shortcore import routing
    from shortcore.store import connect

    redis = connect(url)
    try:
        before = (await redis.info("memory"))["used_memory"]
        per_campaign = 100_000
        recipients = per_campaign // 2
        for i in range(links // per_campaign):
            await routing.register_campaign(
                redis,
                id=f"mem-{i:05d}",
                account="bench",
                domain="ul.example",
                recipients=recipients,
                destinations=[f"https://shop.example/spring-sale/{i}?ref=sms", "https://shop.example/stores"],
                utm={"source": "sms", "campaign": f"spring-{i}"},
                sent_at=time.time(),
                expires_at=time.time() + 30 * 86400,
            )
        after = (await redis.info("memory"))["used_memory"]
        return (after - before) / links
    finally:
        await redis.aclose()


def _nginx(directory: Path, script: Path, seconds: int) -> float | None:
    nginx = shutil.which("nginx")
    if nginx is None:
        return None
    port = _free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        f"daemon off; worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/nginx.err;\n"
        f"events {{}} http {{ access_log off; server {{ listen 127.0.0.1:{port};"
        " location / { return 302 https://shop.example/p?x=1; } } }\n"
    )
    process = subprocess.Popen(["taskset", "-c", SERVER_CPU, nginx, "-c", str(conf), "-p", str(directory)])
    try:
        _wait_port(port)
        return _measure(port, script, seconds)[0]
    finally:
        _stop(process)


def run(quick: bool) -> dict[str, float]:
    from shortcore.store import EmbeddedStore

    require_release_build()
    if shutil.which("wrk") is None:
        raise SystemExit("bench_edge needs wrk (apt-get install wrk)")
    seconds, rounds = (2, 3) if quick else (5, 5)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sc-bench-") as tmp:
        directory = Path(tmp)
        store = EmbeddedStore(directory / "data")
        url = store.start()
        try:
            assert store._process is not None
            os.sched_setaffinity(store._process.pid, {int(LOAD_CPU)})
            # wrk keeps CPU 1 busy; without priority, Valkey waits for its turn on that core and
            # every tracked request waits with it (milliseconds of tail latency that a Redis on
            # its own core, as in any deployment, never shows).
            with contextlib.suppress(PermissionError):
                os.setpriority(os.PRIO_PROCESS, store._process.pid, -10)
            paths, _ = asyncio.run(_setup(url, 10_000))
            script = _wrk_script(directory, paths)
            env = {
                "BENCH_REDIS_URL": url,
                "SHORTCORE_REDIS_URL": url,
                "SHORTCORE_SECRET": SECRET,
                "SHORTCORE_DATA_DIR": str(directory / "data"),
                "PYTHONPATH": str(HERE),
            }

            # The three servers run side by side (an idle one costs nothing) and are measured in
            # turns, round after round: on a shared machine the load drifts, and a ratio of runs
            # seconds apart is worth more than one of runs a minute apart.
            before = asyncio.run(_stream_length(url))
            targets = {
                "ceiling": ("edge_apps:ceiling_app", False),
                "naive": ("edge_apps:naive_app", False),
                "tracked": ("shortcore.edge:create_app", True),
            }
            servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
            runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in targets}
            cpu_us: dict[str, list[float]] = {name: [] for name in targets}
            try:
                for name, (target, factory) in targets.items():
                    port = _free_port()
                    servers[name] = (_server(target, port, env, factory=factory), port)
                    _wrk(port, script, 1)  # warm-up
                warm = asyncio.run(_stream_length(url))
                for _ in range(rounds):
                    for name, (process, port) in servers.items():
                        cpu = _cpu_seconds(process.pid)
                        run = _wrk(port, script, seconds)
                        runs[name].append(run)
                        cpu_us[name].append((_cpu_seconds(process.pid) - cpu) / run[2] * 1e6)
            finally:
                for process, _ in servers.values():
                    _stop(process)
            after = asyncio.run(_stream_length(url))
            tracked = runs["tracked"]
            figures["redirect.ceiling_rps"] = statistics.median(r[0] for r in runs["ceiling"])
            figures["redirect.naive_rps"] = statistics.median(r[0] for r in runs["naive"])
            figures["redirect.tracked_rps"] = statistics.median(r[0] for r in tracked)
            figures["redirect.p99_ms"] = statistics.median(r[1] for r in tracked)
            figures["redirect.ceiling_p99_ms"] = statistics.median(r[1] for r in runs["ceiling"])
            figures["redirect.events_ok"] = 1.0 if after - warm >= sum(r[2] for r in tracked) and warm > before else 0.0
            # Ratios of the runs of one round, then their median.
            ceiling = runs["ceiling"]
            figures["redirect.ratio"] = statistics.median(t[0] / c[0] for t, c in zip(tracked, ceiling, strict=True))
            figures["redirect.naive_ratio"] = statistics.median(
                n[0] / c[0] for n, c in zip(runs["naive"], runs["ceiling"], strict=True)
            )
            figures["redirect.rounds"] = float(rounds)
            # The server's own CPU time per request (user + system, from /proc): what a request costs
            # whatever else the machine is doing, so this ratio hardly moves with the load.
            figures["redirect.ceiling_cpu_us"] = statistics.median(cpu_us["ceiling"])
            figures["redirect.tracked_cpu_us"] = statistics.median(cpu_us["tracked"])
            figures["redirect.cpu_ratio"] = figures["redirect.ceiling_cpu_us"] / figures["redirect.tracked_cpu_us"]
            figures["redirect.click_id_us"] = _click_id_us()
            per_request_us = 1e6 / figures["redirect.tracked_rps"]
            figures["redirect.click_id_share"] = figures["redirect.click_id_us"] / per_request_us

            granian = _granian(directory, env, script, seconds)
            if granian is not None:
                figures["redirect.granian_rps"] = granian
            nginx = _nginx(directory, script, seconds)
            if nginx is not None:
                figures["redirect.nginx_rps"] = nginx

        finally:
            store.stop()
        # A fresh server of its own, so nothing of the load runs is freed during the measure.
        with EmbeddedStore(directory / "memory") as fresh:
            figures["redis.bytes_per_link"] = asyncio.run(
                _bytes_per_link(fresh.url, 1_000_000 if quick else 10_000_000)
            )
    return figures


def _click_id_us(n: int = 200_000) -> float:
    """Microseconds per ``ClickIds.issue`` on the edge's CPU, best of five rounds."""
    from shortcore.clickids import ClickIds
    from shortcore.events import EventIds

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(SERVER_CPU)})
    try:
        ids, now = EventIds(), time.time()
        event_ids = [ids.new(now) for _ in range(1000)] * (n // 1000)
        issue = ClickIds(SECRET.encode()).issue
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for event_id in event_ids:
                issue(event_id)
            best = min(best, (time.perf_counter() - started) / len(event_ids) * 1e6)
        return best
    finally:
        os.sched_setaffinity(0, before)


def _granian(directory: Path, env: dict[str, str], script: Path, seconds: int) -> float | None:
    if shutil.which("granian") is None and not (Path(sys.executable).parent / "granian").exists():
        return None
    port = _free_port()
    binary = shutil.which("granian") or str(Path(sys.executable).parent / "granian")
    args = ["taskset", "-c", SERVER_CPU, binary, "--interface", "asgi", "--factory", "--port", str(port)]
    args += ["--no-ws", "--log-level", "warning", "--loop", "uvloop", "shortcore.edge:create_app"]
    process = subprocess.Popen(args, env={**os.environ, **env}, cwd=HERE)
    try:
        _wait_port(port)
        return _measure(port, script, seconds)[0]
    finally:
        _stop(process)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for key, value in sorted(run(quick).items()):
        print(f"{key:28} {value:>14,.3f}")
