"""``shortcore serve`` and ``shortcore demo`` as a user runs them: real processes, real stores."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

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


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    os.set_blocking(process.stdout.fileno(), False)  # read what is there, never wait on the pipe
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            seen.append(line)
            if re.search(pattern, line):
                return "".join(seen)
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not seen in time; output:\n{''.join(seen)}")


def test_demo_serves_links_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHORTCORE_")}
    command = [sys.executable, "-m", "shortcore", "demo", "--data-dir", str(tmp_path), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output = _read_until(process, r"Stop with Ctrl-C", timeout=120)
        key = re.search(r"API key\s+(sck_\S+)", output)
        links = re.findall(rf"http://127\.0\.0\.1:{port}/[0-9A-Za-z]{{7}}", output)
        assert key and len(set(links)) == 6, output
        click = httpx.get(links[0], headers={"User-Agent": IPHONE, "Accept": "text/html", "Accept-Language": "en"})
        assert click.status_code == 302
        assert click.headers["location"].startswith("https://example.com/spring?ref=sms&utm_source=shortcore")
        assert "sc_click=" in click.headers["location"] and "sc_click=" in click.headers["set-cookie"]
        campaigns = httpx.get(
            f"http://127.0.0.1:{port + 1}/api/v1/campaigns", headers={"Authorization": f"Bearer {key.group(1)}"}
        )
        assert campaigns.status_code == 200 and len(campaigns.json()["campaigns"]) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
    # Nothing left behind: the control process and the embedded store are gone.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""
