"""``shortcore serve``: the process layout.

The parent process resolves the settings, creates the secret if there is none, starts the
embedded Valkey/Redis when no URL is configured, and passes everything to the workers through
``SHORTCORE_*`` variables; the workers (uvicorn's, or granian's) each build the edge app from
the environment. On exit the parent stops the embedded server, which flushes its AOF.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
from typing import Any

from shortcore.config import ConfigError, Settings
from shortcore.store import EmbeddedStore

log = logging.getLogger("shortcore")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def serve(*, host: str, port: int, workers: int, server: str = "uvicorn", **overrides: Any) -> int:
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
    try:
        if server == "granian":
            return _granian(host, port, workers)
        return _uvicorn(host, port, workers)
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded store stopped")


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
        server_header=False,
        date_header=True,
        log_level="info",
    )
    return 0


def _granian(host: str, port: int, workers: int) -> int:
    if not _has("granian"):
        raise ConfigError("--server granian needs the granian package (pip install granian)")
    from granian import Granian  # type: ignore[import-not-found, unused-ignore]

    Granian(
        "shortcore.edge:create_app",
        factory=True,
        address=host,
        port=port,
        workers=workers,
        interface="asgi",
        log_access=False,
    ).serve()
    return 0
