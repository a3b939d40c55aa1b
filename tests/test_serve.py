"""``shortcore serve`` and ``shortcore demo`` as a user runs them: real processes, real stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import orjson

from shortcore import accounts
from shortcore.store import EmbeddedStore, connect
from shortcore.webhooks import verify

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.0 Mobile/15E148 Safari/604.1"
)


def _free_ports() -> int:
    """A port p with p + 1 free too (edge and control)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as t:
            try:
                t.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free pair of ports")


class Output:
    """A process's output, read line by line on a thread so that a silent process cannot hang
    the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._process, self._stdout = process, process.stdout
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._stdout:
            for line in self._stdout:
                self._lines.put(line)

    def until(self, pattern: str, timeout: float) -> str:
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if self._process.poll() is not None:
                    break
                continue
            seen.append(line)
            if re.search(pattern, line):
                return "".join(seen)
        raise AssertionError(f"{pattern!r} not seen in time; output:\n{''.join(seen)}")

    def join(self) -> None:
        """After the process has ended: the reader reaches the end and closes the pipe."""
        self._thread.join(10)


def test_demo_serves_links_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHORTCORE_")}
    command = [sys.executable, "-m", "shortcore", "demo", "--data-dir", str(tmp_path), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = Output(process)
    try:
        text = output.until(r"Stop with Ctrl-C", timeout=120)
        key = re.search(r"API key\s+(sck_\S+)", text)
        links = re.findall(rf"http://127\.0\.0\.1:{port}/[0-9A-Za-z]{{7}}", text)
        assert key and len(set(links)) == 6, text
        click = httpx.get(links[0], headers={"User-Agent": IPHONE, "Accept": "text/html", "Accept-Language": "en"})
        assert click.status_code == 302
        assert click.headers["location"].startswith("https://example.com/spring?ref=sms&utm_source=shortcore")
        assert "sc_click=" in click.headers["location"] and "sc_click=" in click.headers["set-cookie"]
        campaigns = httpx.get(
            f"http://127.0.0.1:{port + 1}/api/v1/campaigns", headers={"Authorization": f"Bearer {key.group(1)}"}
        )
        assert campaigns.status_code == 200 and len(campaigns.json()["campaigns"]) == 1
        report = re.search(rf"(http://127\.0\.0\.1:{port + 1}/reports/campaigns/\S+)", text)
        assert report, text
        page = httpx.get(report.group(1))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        output.join()
    assert process.returncode == 0
    # Nothing left behind: the control process and the embedded store are gone.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


class _Hooks(BaseHTTPRequestHandler):
    """A webhook receiver on loopback: every POST's headers and body go to ``received``."""

    received: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.put(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in time")


def test_click_and_conversion_reach_a_signed_webhook_and_stats(tmp_path: Path) -> None:
    """End to end through ``shortcore serve``: a campaign and a webhook made through the API, a
    person's click on the short link, the conversion pixel with the click id; the receiver gets
    both, signed, and the campaign's stats count the conversion. The store is the test's own, so
    the sink starts on an empty stream (not on what the run's other tests left in theirs)."""
    with EmbeddedStore(tmp_path / "redis") as store:
        _serve_end_to_end(tmp_path / "data", store.url)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def _serve_end_to_end(data_dir: Path, redis_url: str) -> None:
    port = _free_ports()
    edge, control = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHORTCORE_")}
    env["SHORTCORE_WEBHOOK_ALLOW"] = "127.0.0.1/32"
    command = [
        sys.executable, "-m", "shortcore", "serve", "--data-dir", str(data_dir), "--port", str(port),
        "--redis-url", redis_url, "--secret", "e2e secret", "--base-url", edge,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = Output(process)
    stack = contextlib.ExitStack()
    try:
        _ready(control + "/openapi.json", 120)
        _ready(edge + "/healthz", 60)

        async def new_account() -> str:
            redis = connect(redis_url)
            try:
                _, key = await accounts.create_account(redis, "e2e", default_region="DE")
                return key.secret
            finally:
                await redis.aclose()

        key = asyncio.run(new_account())
        api = stack.enter_context(httpx.Client(base_url=control, headers={"Authorization": f"Bearer {key}"}))
        created = api.post(
            "/api/v1/campaigns",
            json={
                "name": "e2e",
                "text": "Sale: https://shop.example/spring",
                "recipients": [{"phone": "+4915123450001", "id": "cust-1"}, {"phone": "+4915123450002"}],
                "sent_at": time.time() - 3600,  # long enough ago for a person to have read it
            },
        )
        assert created.status_code == 201, created.text
        campaign = created.json()["id"]
        messages = [orjson.loads(line) for line in api.get(created.json()["messages_url"]).text.splitlines()]
        link = messages[0]["links"][0]
        hook = api.post("/api/v1/webhooks", json={"url": f"http://127.0.0.1:{hooks.server_port}/hook"})
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        tag = api.get("/api/v1/conversions/tag").json()["tag"]

        click = httpx.get(link, headers={"User-Agent": IPHONE, "Accept": "text/html", "Accept-Language": "de-DE"})
        assert click.status_code == 302
        click_id = parse_qs(urlsplit(click.headers["location"]).query)["sc_click"][0]
        query = {"cid": tag, "event": "purchase", "value": "19.90", "currency": "EUR", "order_id": "E2E-1"}
        pixel = httpx.get(f"{edge}/c_t", params={**query, "click": click_id}, headers={"User-Agent": IPHONE})
        assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
        # The same visit with an altered click id: still the GIF, and credited to nobody.
        forged = click_id[:-1] + ("A" if click_id[-1] != "A" else "B")
        query["order_id"] = "E2E-2"
        assert httpx.get(f"{edge}/c_t", params={**query, "click": forged}).status_code == 200

        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while len(got) < 3 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                headers, body = _Hooks.received.get(timeout=0.5)
                assert verify(secret, headers["shortcore-signature"], body), headers
                event = orjson.loads(body)
                got[event["type"] if event["type"] == "click" else event["conversion"]["order_id"]] = event
        assert set(got) == {"click", "E2E-1", "E2E-2"}, got
        clicked, converted, unattributed = got["click"], got["E2E-1"], got["E2E-2"]
        assert (clicked["campaign_id"], clicked["class"], clicked["recipient"]["id"]) == (campaign, "human", "cust-1")
        assert clicked["link"]["url"] == "https://shop.example/spring"
        assert clicked["click_id"] == click_id  # the signed id its landing page got
        assert converted["campaign_id"] == campaign and converted["recipient"]["phone"] == "+4915123450001"
        assert converted["conversion"]["attribution"] == "click" and converted["conversion"]["value"] == 19.9
        assert converted["conversion"]["click_id"] == clicked["id"]
        assert unattributed["conversion"]["attribution"] == "unattributed" and unattributed["campaign_id"] is None

        stats: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = api.get(f"/api/v1/campaigns/{campaign}/stats").json()
            if stats.get("conversions"):
                break
            time.sleep(0.2)
        assert (stats["human_clicks"], stats["conversions"], stats["conversion_value"]) == (1, 1, 19.9)
    finally:
        stack.close()
        hooks.shutdown()
        hooks.server_close()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        output.join()
    assert process.returncode == 0


def test_serve_with_two_workers_answers_every_click_once(tmp_path: Path) -> None:
    """``--workers 2``: two edge processes on one port, one control process; every click is
    answered, lands in the stats exactly once, and SIGTERM stops every process."""
    port = _free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHORTCORE_")}
    command = [
        sys.executable, "-m", "shortcore", "demo", "--workers", "2", "--data-dir", str(tmp_path), "--port", str(port),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = Output(process)
    clicks = 120
    try:
        text = output.until(r"Stop with Ctrl-C", timeout=120)
        key = re.search(r"API key\s+(sck_\S+)", text)
        links = sorted(set(re.findall(rf"http://127\.0\.0\.1:{port}/[0-9A-Za-z]{{7}}", text)))
        assert key and len(links) == 6, text
        api = f"http://127.0.0.1:{port + 1}/api/v1"
        auth = {"Authorization": f"Bearer {key.group(1)}"}
        campaign_id = httpx.get(f"{api}/campaigns", headers=auth).json()["campaigns"][0]["id"]
        browser = {"User-Agent": IPHONE, "Accept": "text/html", "Accept-Language": "en"}
        # A fresh connection per click, so the kernel hands them to either worker.
        statuses = [httpx.get(links[i % len(links)], headers=browser).status_code for i in range(clicks)]
        assert statuses == [302] * clicks
        # Both workers run the edge app: each leaves its figures in the metrics directory.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list((tmp_path / "metrics").glob("*.json"))) < 2:
            time.sleep(0.2)
        assert len(list((tmp_path / "metrics").glob("*.json"))) == 2
        stats: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = httpx.get(f"{api}/campaigns/{campaign_id}/stats", headers=auth).json()
            # One address hitting every recipient's links at once is a sweep by the sequence rules,
            # so the clicks count as bot hits; what matters here is that each counts once.
            if stats.get("human_clicks", 0) + stats.get("bot_hits", 0) >= clicks:  # type: ignore[operator]
                break
            time.sleep(0.5)
        assert stats.get("human_clicks", 0) + stats.get("bot_hits", 0) == clicks, stats  # type: ignore[operator]
        # /metrics, answered by either worker, adds up both workers' counters (files every 2 s).
        time.sleep(2.5)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        ok = re.search(r'shortcore_edge_requests_total\{class="human",outcome="ok",type="click"\} (\d+)', scraped)
        assert ok and float(ok.group(1)) == clicks, scraped
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        output.join()
    assert process.returncode == 0
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""
