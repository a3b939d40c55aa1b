"""Campaign creation end to end: a CSV of N recipients and a two-link message in, personalised
messages out, recipients stored.

The control API runs in its own process (uvicorn, one worker) on a real Valkey/Redis and a chDB
directory; this script uploads the CSV over loopback HTTP, then downloads every message as JSON
lines. ``campaign.recipients_per_s`` is N over the time from the start of the upload to the last
message downloaded. ``campaign.peak_rss_mb`` is the server process's peak resident memory
(VmHWM), ``campaign.peak_rss_small_mb`` the same for a run a tenth the size, to show whether
memory grows with the list; ``campaign.baseline_idle_rss_mb`` is the server's peak before the
upload (Python, chDB started, schema migrated), ``campaign.rss_growth_mb`` the creation's share.
``campaign.baseline_csv_parse_per_s`` is Python's csv module merely reading the same file, the
floor of any implementation that makes a Python object per row.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import require_release_build, wait_until_answering

TEXT = "Hi! Spring sale, 20% off: https://shop.example/spring?id=1 - stores: www.shop.example/stores"


def _csv(rows: int) -> bytes:
    out = io.StringIO()
    out.write("phone,id,name\n")
    for i in range(rows):
        out.write(f"+49151{i:08d},r{i},Name{i}\n")
    return out.getvalue().encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _one_run(rows: int, redis_url: str, workdir: Path) -> tuple[float, float, float]:
    import httpx2 as httpx

    from shortcore import accounts

    port = _free_port()
    data_dir = workdir / f"run-{rows}"
    env = {
        **os.environ,
        "SHORTCORE_DATA_DIR": str(data_dir),
        "SHORTCORE_REDIS_URL": redis_url,
        "SHORTCORE_BASE_URL": "https://ul.example",
        "SHORTCORE_SECRET": "bench",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "shortcore.control:app_from_env", "--port", str(port),
         "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        key = accounts.new_api_key(redis_url, "bench", default_region="DE")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=600, headers={"Authorization": f"Bearer {key}"}) as client:
            wait_until_answering(client, server)
            body = _csv(rows)
            idle_rss = _peak_rss_mb(server.pid)
            started = time.perf_counter()
            created = client.post(
                "/api/v1/campaigns",
                data={"name": "bench", "text": TEXT},
                files={"recipients": ("list.csv", body, "text/csv")},
            )
            created.raise_for_status()
            count = 0
            with client.stream("GET", created.json()["messages_url"]) as response:
                for line in response.iter_lines():
                    count += bool(line)
            elapsed = time.perf_counter() - started
            if count != rows or created.json()["recipients"] != rows:
                raise SystemExit(f"expected {rows} messages, got {count}")
            return rows / elapsed, _peak_rss_mb(server.pid), idle_rss
    finally:
        server.terminate()
        server.wait(30)


def run(quick: bool) -> dict[str, float]:
    from shortcore.store import EmbeddedStore

    require_release_build()
    rows = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(Path(tmp))
        url = store.start()
        try:
            _, small_rss, _ = _one_run(rows // 10, url, Path(tmp))
            rate, rss, idle_rss = _one_run(rows, url, Path(tmp))
        finally:
            store.stop()
    body = _csv(rows).decode()
    started = time.perf_counter()
    for _ in csv.reader(io.StringIO(body)):
        pass
    parse_rate = rows / (time.perf_counter() - started)
    return {
        "campaign.recipients_per_s": rate,
        "campaign.peak_rss_mb": rss,
        "campaign.peak_rss_small_mb": small_rss,
        "campaign.baseline_idle_rss_mb": idle_rss,
        "campaign.rss_growth_mb": rss - idle_rss,
        "campaign.rows": float(rows),
        "campaign.baseline_csv_parse_per_s": parse_rate,
        "campaign.ratio_to_csv_parse": rate / parse_rate,
    }


if __name__ == "__main__":
    for key, value in run(quick="--quick" in sys.argv).items():
        print(f"{key:36} {value:>16,.1f}")
