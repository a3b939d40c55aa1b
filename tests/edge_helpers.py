"""Helpers for the edge tests: an edge app running on a real store, and a client for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx

from shortcore.config import Settings
from shortcore.edge import EdgeApp, EdgeState

SECRET = "test-secret"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1"
)
BROWSER_HEADERS = {"user-agent": IPHONE, "accept": "text/html,application/xhtml+xml", "accept-language": "en-GB"}


@contextlib.asynccontextmanager
async def edge(
    redis_url: str, data_dir: Path, client_ip: str = "203.0.113.7", **settings: Any
) -> AsyncIterator[tuple[EdgeState, httpx.AsyncClient]]:
    app = EdgeApp(Settings(data_dir=data_dir, redis_url=redis_url, secret=SECRET, **settings))
    async with app.running() as state:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://ul.example") as client:
            yield state, client
