"""Helpers for the edge tests: an edge app running on a real store, and a client for it."""

from __future__ import annotations

import contextlib
import secrets
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
    redis_url: str, data_dir: Path, client_ip: str | None = None, **settings: Any
) -> AsyncIterator[tuple[EdgeState, httpx.AsyncClient]]:
    """An edge app on ``redis_url`` and a client for it. The client's address is a fresh one of the
    documentation prefix 2001:db8::/32 unless given: unknown-token strikes are counted per address in the run's shared
    Redis, so tests must not share one by accident."""
    if client_ip is None:
        client_ip = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    app = EdgeApp(Settings(data_dir=data_dir, redis_url=redis_url, secret=SECRET, **settings))
    async with app.running() as state:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://ul.example") as client:
            yield state, client
