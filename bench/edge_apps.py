"""The two baselines of ``bench_edge.py``, served by the same uvicorn setup as shortcore's edge.

``ceiling_app``: Starlette answering every ``GET /{token}`` with a fixed 302 — no lookup, no
event: what the framework and server cost alone.

``naive_app``: the obvious tracked redirect — per request ``await redis.get(link key)`` and
``await redis.xadd(...)`` with redis-py, then the 302.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def fixed(request: Request) -> Response:
    return Response(status_code=302, headers={"location": "https://shop.example/p?x=1&utm_source=sms"})


ceiling_app = Starlette(routes=[Route("/{token}", fixed)])


@contextlib.asynccontextmanager
async def _redis(app: Starlette) -> AsyncIterator[None]:
    app.state.redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    yield
    await app.state.redis.aclose()


async def naive(request: Request) -> Response:
    r = request.app.state.redis
    token = request.path_params["token"]
    destination = await r.get(f"naive:link:{token}")
    if destination is None:
        return PlainTextResponse("not found", status_code=404)
    await r.xadd(
        "naive:events",
        {
            "token": token,
            "time": str(time.time()),
            "ip": request.client.host if request.client else "",
            "ua": request.headers.get("user-agent", ""),
        },
    )
    return Response(status_code=302, headers={"location": destination.decode()})


naive_app = Starlette(routes=[Route("/{token}", naive)], lifespan=_redis)
