"""``shortcore campaign create`` against a real control API process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest

from shortcore import accounts

TEXT = "Spring sale! https://shop.example/spring?id=1 and www.shop.example/stores"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "SHORTCORE_DATA_DIR": str(tmp_path_factory.mktemp("server")),
        "SHORTCORE_REDIS_URL": redis_url,
        "SHORTCORE_BASE_URL": "https://ul.example",
        "SHORTCORE_SECRET": "cli test",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "shortcore.control:app_from_env", "--port", str(port)]
    process = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/openapi.json")
            break
        except httpx.TransportError:
            assert process.poll() is None, "the control app exited"
            assert time.monotonic() < deadline, "the control app did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def api_key(redis_url: str) -> str:
    return accounts.new_api_key(redis_url, "cli", default_region="DE")


def shortcore(*args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHORTCORE_API_KEY"}
    if key:
        env["SHORTCORE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "shortcore", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_create_writes_messages_and_summary(server: str, api_key: str, tmp_path: Path) -> None:
    recipients = tmp_path / "list.csv"
    rows = "".join(f"0151{i:08d},r{i}\n" for i in range(300))
    recipients.write_text("phone,id\n" + rows + "oops,x\n015100000000,d\n")
    out = tmp_path / "messages.jsonl"
    result = shortcore(
        "campaign", "create", "--text", TEXT, "--recipients", str(recipients), "--out", str(out), "--api-url", server,
        key=api_key,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "recipients  300" in result.stdout
    assert "invalid     1" in result.stdout and "duplicates  1" in result.stdout
    assert "line 302: 'oops' not a phone number" in result.stdout
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(rows) == 300
    assert rows[0]["phone"] == "+4915100000000" and rows[0]["id"] == "r0"
    assert all(len(row["links"]) == 2 and row["links"][0] in row["text"] for row in rows)


def test_errors_are_clear(server: str, api_key: str, tmp_path: Path) -> None:
    recipients = tmp_path / "list.csv"
    recipients.write_text("phone\n+4915123456789\n")
    no_links = shortcore("campaign", "create", "--text", "no links", "--recipients", str(recipients),
                         "--api-url", server, key=api_key)  # fmt: skip
    assert no_links.returncode == 1
    assert "no http://" in no_links.stderr and "Traceback" not in no_links.stderr
    bad_key = shortcore("campaign", "create", "--text", TEXT, "--recipients", str(recipients), "--api-url", server,
                        key="sck_wrong")  # fmt: skip
    assert bad_key.returncode == 1 and "API key" in bad_key.stderr
    no_key = shortcore("campaign", "create", "--text", TEXT, "--recipients", str(recipients), "--api-url", server)
    assert no_key.returncode == 2 and "--api-key" in no_key.stderr
    missing = shortcore("campaign", "create", "--text", TEXT, "--recipients", str(tmp_path / "nope.csv"), key=api_key)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    down = shortcore("campaign", "create", "--text", TEXT, "--recipients", str(recipients),
                     "--api-url", f"http://127.0.0.1:{_free_port()}", key=api_key)  # fmt: skip
    assert down.returncode == 1 and "no shortcore server" in down.stderr


def test_create_with_variants(server: str, api_key: str, tmp_path: Path) -> None:
    recipients = tmp_path / "list.csv"
    recipients.write_text("phone\n" + "".join(f"0151{i:08d}\n" for i in range(200)))
    out = tmp_path / "messages.jsonl"
    result = shortcore(
        "campaign", "create", "--variant", "A=Sale: https://shop.example/a", "--variant",
        "B:3=Sale, 20% off: https://shop.example/b", "--recipients", str(recipients), "--out", str(out),
        "--api-url", server, key=api_key,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    counts = {name: sum(row["variant"] == name for row in rows) for name in ("A", "B")}
    assert f"variant     A: {counts['A']} messages (weight 1)" in result.stdout
    assert f"variant     B: {counts['B']} messages (weight 3)" in result.stdout
    assert counts["B"] > counts["A"] and counts["A"] + counts["B"] == 200
    both = shortcore("campaign", "create", "--text", TEXT, "--variant", "A=x", "--recipients", str(recipients),
                     "--api-url", server, key=api_key)  # fmt: skip
    assert both.returncode == 2 and "--variant" in both.stderr
    bad = shortcore("campaign", "create", "--variant", "A:x=https://a.example", "--variant", "B=https://b.example",
                    "--recipients", str(recipients), "--api-url", server, key=api_key)  # fmt: skip
    assert bad.returncode == 2 and "not a number" in bad.stderr
    one = shortcore("campaign", "create", "--variant", "A=https://a.example", "--recipients", str(recipients),
                    "--api-url", server, key=api_key)  # fmt: skip
    assert one.returncode == 1 and "2 to 26" in one.stderr and "Traceback" not in one.stderr
