"""Bad input over a real socket: the edge under uvicorn (httptools), on a real Valkey/Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from edge_helpers import SECRET


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def edge_port(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = _free_port()
    env = {
        **os.environ,
        "SHORTCORE_REDIS_URL": redis_url,
        "SHORTCORE_SECRET": SECRET,
        "SHORTCORE_DATA_DIR": str(tmp_path_factory.mktemp("edge-http")),
        "SHORTCORE_UNKNOWN_TOKEN_LIMIT": "0",
    }
    args = [sys.executable, "-m", "uvicorn", "shortcore.edge:create_app", "--factory", "--port", str(port)]
    args += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"connection: close" not in b"".join(chunks).lower():
                break
        return b"".join(chunks)


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


BAD_PATHS = [
    b"/" + b"a" * 10_000,
    b"/%00%00%00%00%00%00%00",
    b"/%ff%fe%fd%fc%fb%fa%f9",
    b"/%zz%%%",
    b"/\xff\xfe\xfd\xfc\xfb\xfa\xf9",
    b"/abc%2F..%2F..%2Fetc",
    b"/../../etc/passwd",
    b"/abcdefg?x=\xff",
    b"//",
    b"/",
    b"/c_t?cid=\xff&value=NaN&value=Infinity&order_id=%00",
    b"/c_t?value[]=1&cid[x]=2&click=%E2%80%AE",
]


@pytest.mark.parametrize("path", BAD_PATHS, ids=range(len(BAD_PATHS)))
def test_bad_paths_never_5xx(edge_port: int, path: bytes) -> None:
    response = raw(edge_port, b"GET " + path + b" HTTP/1.1\r\nHost: ul.example\r\nConnection: close\r\n\r\n")
    assert status(response) in (200, 302, 400, 404, 414), response[:200]
    assert b"Traceback" not in response


BAD_HEADERS = [
    b"User-Agent: \xff\xfe\x00garbage\r\n",
    b"User-Agent: " + b"A" * 60_000 + b"\r\n",
    b"Cookie: sc_click=\xff\xff; ;;; =;\r\n",
    b"X-Forwarded-For: \xff, ::::, 999.1.1.1\r\n",
    b"Host: \xff\xfe:99999\r\n",
    b"Accept-Language: " + b"en," * 5000 + b"\r\n",
    b"Bad Header Without Colon\r\n",
]


@pytest.mark.parametrize("header", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
def test_bad_headers_never_5xx(edge_port: int, header: bytes) -> None:
    for path in (b"/abcdefg", b"/c_t?cid=x"):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: ul.example\r\n" + header + b"Connection: close\r\n\r\n"
        response = raw(edge_port, request)
        assert status(response) in (0, 200, 302, 400, 404, 431), response[:200]
        assert b"Traceback" not in response


def test_location_never_carries_request_bytes(edge_port: int) -> None:
    response = raw(
        edge_port, b"GET /abcdefg%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: ul.example\r\nConnection: close\r\n\r\n"
    )
    head = response.split(b"\r\n\r\n", 1)[0].lower()
    assert b"set-cookie: x=1" not in head
    assert status(response) == 404
