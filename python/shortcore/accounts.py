"""Accounts and their API keys, in the hot store.

An API key is shown once, when it is made, and stored only as its SHA-256: the key carries 256
bits from ``secrets``, so a fast hash is enough (there is nothing to brute-force), and a lookup is
one ``GET``. A key is revoked by deleting its hash; the account keeps a list of its keys by id.

Keys in Redis:
``sc:account:<id>``          the account as JSON (:class:`Account`)
``sc:account:<id>:keys``     hash: key id → SHA-256 of the key
``sc:apikey:<sha256>``       JSON ``{"account": id, "key_id": id, "created_at": t}``
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Final

import orjson

from shortcore.store import AnyRedis

ACCOUNT_KEY: Final = "sc:account:"
APIKEY_KEY: Final = "sc:apikey:"
KEY_PREFIX: Final = "sck_"


class AccountError(ValueError):
    """A request about accounts or keys that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    created_at: float
    #: Host of the short domain campaigns use unless they name another.
    default_domain: str | None = None
    #: Region national phone numbers are read in (ISO 3166 alpha-2), or None for E.164 only.
    default_region: str | None = None
    attribution_days: int = 30
    view_through_hours: int = 24

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Account:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A new key: ``secret`` is the whole key, shown once."""

    key_id: str
    account: str
    secret: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


async def create_account(
    redis: AnyRedis, name: str, *, default_domain: str | None = None, default_region: str | None = None
) -> tuple[Account, ApiKey]:
    """A new account and its first API key."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise AccountError("an account name must be 1 to 200 characters")
    account = Account(
        id=_new_id("acc_"),
        name=name.strip(),
        created_at=time.time(),
        default_domain=default_domain,
        default_region=default_region,
    )
    await redis.set(ACCOUNT_KEY + account.id, account.to_json())
    return account, await create_key(redis, account.id)


def new_api_key(redis_url: str, name: str, *, default_region: str | None = None) -> str:
    """Creates an account from synchronous code (CLI, demo, benches) and returns its first key."""
    import asyncio

    from shortcore.store import connect

    async def create() -> str:
        redis = connect(redis_url)
        try:
            _, key = await create_account(redis, name, default_region=default_region)
            return key.secret
        finally:
            await redis.aclose()

    return asyncio.run(create())


async def get_account(redis: AnyRedis, account_id: str) -> Account | None:
    raw = await redis.get(ACCOUNT_KEY + account_id)
    return None if raw is None else Account.from_json(raw)


async def save_account(redis: AnyRedis, account: Account) -> None:
    await redis.set(ACCOUNT_KEY + account.id, account.to_json())


async def create_key(redis: AnyRedis, account_id: str) -> ApiKey:
    key_id = _new_id("key_")
    secret = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
    digest = hash_key(secret)
    record = orjson.dumps({"account": account_id, "key_id": key_id, "created_at": time.time()})
    await redis.set(APIKEY_KEY + digest, record)
    await redis.hset(f"{ACCOUNT_KEY}{account_id}:keys", key_id, digest)
    return ApiKey(key_id=key_id, account=account_id, secret=secret)


async def list_keys(redis: AnyRedis, account_id: str) -> list[str]:
    ids = await redis.hkeys(f"{ACCOUNT_KEY}{account_id}:keys")
    return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in ids)


async def revoke_key(redis: AnyRedis, account_id: str, key_id: str) -> bool:
    """Revokes one of the account's keys; False when it has no such key."""
    digest = await redis.hget(f"{ACCOUNT_KEY}{account_id}:keys", key_id)
    if digest is None:
        return False
    digest = digest.decode() if isinstance(digest, bytes) else str(digest)
    await redis.delete(APIKEY_KEY + digest)
    await redis.hdel(f"{ACCOUNT_KEY}{account_id}:keys", key_id)
    return True


async def authenticate(redis: AnyRedis, key: str) -> Account | None:
    """The account behind an API key, or None for an unknown, revoked or malformed key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    raw = await redis.get(APIKEY_KEY + hash_key(key))
    if raw is None:
        return None
    account_id = orjson.loads(raw).get("account")
    return await get_account(redis, str(account_id)) if account_id else None
