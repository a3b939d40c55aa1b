"""``shortcore serve``: the process layout.

The parent process resolves the settings, creates the secret if there is none, starts the
embedded Valkey/Redis when no URL is configured, and passes everything to its children through
``SHORTCORE_*`` variables:

* one **control** process (the ``/api/v1`` API and OpenAPI, on ``--control-port``, default the
  edge port + 1): it alone opens the analytics store, because chDB locks its data directory to
  one process, and it is where the sink and the webhook sender run;
* the **edge** workers (uvicorn's, or granian's), each building the edge app from the
  environment; they only talk to Redis, so there can be many.

On exit the parent stops the control process and then the embedded server, which flushes its AOF.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from shortcore.config import ConfigError, Settings
from shortcore.store import EmbeddedStore

log = logging.getLogger("shortcore")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class ControlProcess:
    """The control app in a process of its own, owning the analytics store."""

    def __init__(self, host: str, port: int) -> None:
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        self._command = [
            sys.executable, "-m", "uvicorn", "--factory", "shortcore.control:app_from_env",
            "--host", host, "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, env=os.environ.copy())

    def wait_ready(self, timeout: float = 120.0) -> bool:
        return _wait_for(self.url + "/openapi.json", timeout, self._process)

    def stop(self, timeout: float = 30.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _wait_for(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers
        except OSError:
            time.sleep(0.1)
    return False


#: Called once both apps answer, with the edge's and the control API's URLs (``shortcore demo``).
OnReady = Callable[[str, str], None]


def serve(
    *,
    host: str,
    port: int,
    workers: int,
    server: str = "uvicorn",
    control_port: int | None = None,
    on_ready: OnReady | None = None,
    **overrides: Any,
) -> int:
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(**overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.token_secret()  # created here once, before workers race for it
    embedded: EmbeddedStore | None = None
    if settings.redis_url is None:
        embedded = EmbeddedStore(settings.data_dir)
        url = embedded.start()
        log.info("embedded store %s (files in %s)", url, embedded.dir)
        settings = dataclasses.replace(settings, redis_url=url)
    settings = dataclasses.replace(settings, data_dir=settings.data_dir.resolve())
    os.environ.update(settings.to_env())
    control = ControlProcess(host, control_port if control_port is not None else port + 1)
    # uvicorn re-raises SIGTERM/SIGINT once it has shut down; as exceptions they reach the
    # `finally` below, which stops the control process and the embedded store.
    signal.signal(signal.SIGTERM, _stop_signal)
    try:
        control.start()
        edge_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        log.info("edge on %s, control API on %s", edge_url, control.url)
        threading.Thread(target=_announce, args=(control, edge_url, on_ready), daemon=True).start()
        if server == "granian":
            return _granian(host, port, workers)
        return _uvicorn(host, port, workers)
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        control.stop()
        if embedded is not None:
            embedded.stop()
            log.info("embedded store stopped")


class _Stopped(Exception):
    """SIGTERM, as an exception."""


def _stop_signal(signum: int, frame: object) -> None:
    raise _Stopped


def _announce(control: ControlProcess, edge_url: str, on_ready: OnReady | None) -> None:
    if not control.wait_ready():
        log.error("the control API did not start; see the messages above")
        return
    if on_ready is not None and _wait_for(edge_url + "/healthz", 60.0):
        on_ready(edge_url, control.url)


def _uvicorn(host: str, port: int, workers: int) -> int:
    import uvicorn

    uvicorn.run(
        "shortcore.edge:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        lifespan="on",
        access_log=False,
        # The edge reads the client address itself, from the configured trusted proxy header
        # only; uvicorn's own X-Forwarded-For rewriting would trust any local peer.
        proxy_headers=False,
        server_header=False,
        date_header=True,
        log_level="info",
    )
    return 0


def _granian(host: str, port: int, workers: int) -> int:
    if not _has("granian"):
        raise ConfigError("--server granian needs the granian package (pip install 'shortcore[granian]')")
    from granian import Granian  # type: ignore[import-not-found, unused-ignore]
    from granian.constants import Interfaces  # type: ignore[import-not-found, unused-ignore]

    Granian(
        "shortcore.edge:create_app",
        factory=True,
        address=host,
        port=port,
        workers=workers,
        interface=Interfaces.ASGI,
        log_access=False,
    ).serve()
    return 0
