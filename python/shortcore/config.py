"""Configuration: one typed settings object, read from the environment (``SHORTCORE_*``) and
overridden by ``shortcore serve`` flags. Every other module takes a :class:`Settings`; none reads
the environment itself.

The names of the five settings in ``SPEC.md`` are fixed; the rest are edge tunables with safe
defaults.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_PREFIX = "SHORTCORE_"
SECRET_FILE = "secret"


class ConfigError(ValueError):
    """A setting has a value shortcore cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the processes of one deployment agree on."""

    data_dir: Path = Path(".shortcore")
    #: ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://``; None = embedded server.
    redis_url: str | None = None
    #: None = ``chdb://<data_dir>/clickhouse``.
    clickhouse_url: str | None = None
    #: None = generated once and kept in ``<data_dir>/secret``; see :meth:`token_secret`.
    secret: str | None = None
    base_url: str | None = None
    #: A request header set by a proxy you run (``X-Forwarded-For``, ``X-Real-IP``,
    #: ``CF-Connecting-IP``…). Unset: the TCP peer address is the client address.
    trusted_proxy_header: str | None = None
    #: Unknown-token requests a client may make per minute before every token request from it
    #: is answered 429 for a while (enumeration protection). 0 disables the limit.
    unknown_token_limit: int = 60
    cookie_days: int = 30
    #: Requests this soon after ``sent_at`` are too fast to be a person reading the SMS.
    too_soon_seconds: float = 2.0
    #: Seconds a batch of events may wait for Redis before it goes to the spool instead.
    event_timeout: float = 2.0
    #: Days a transactional message's links keep their routing data in Redis (unless the request
    #: gives ``expires_at``); after that they answer as unknown links.
    transactional_days: int = 90

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``SHORTCORE_*`` variables, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = _convert(field.name, field.type, raw)
        for name, value in overrides.items():
            if value is not None:
                field_type = next(f.type for f in dataclasses.fields(cls) if f.name == name)
                values[name] = _convert(name, field_type, value) if isinstance(value, str) else value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.unknown_token_limit < 0:
            raise ConfigError("unknown_token_limit must be >= 0")
        if self.cookie_days <= 0:
            raise ConfigError("cookie_days must be > 0")
        if self.event_timeout <= 0:
            raise ConfigError("event_timeout must be > 0")
        if self.transactional_days <= 0:
            raise ConfigError("transactional_days must be > 0")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
        ):
            raise ConfigError(
                f"SHORTCORE_REDIS_URL must be a redis://, rediss:// or unix:// URL, got {self.redis_url!r}"
            )

    @property
    def effective_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def to_env(self) -> dict[str, str]:
        """These settings as ``SHORTCORE_*`` variables, for worker processes started by ``serve``."""
        env = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                env[ENV_PREFIX + field.name.upper()] = str(value)
        return env

    def token_secret(self) -> bytes:
        """The key behind tokens: ``SHORTCORE_SECRET``, else the one kept in the data directory,
        created on first use (atomically, so concurrent workers agree on it)."""
        if self.secret:
            return self.secret.encode()
        path = self.data_dir / SECRET_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        value = path.read_text().strip()
        if not value:
            raise ConfigError(f"{path} is empty; delete it or set SHORTCORE_SECRET")
        return value.encode()


def _convert(name: str, field_type: Any, raw: str) -> Any:
    kind = str(field_type)
    try:
        if "Path" in kind:
            return Path(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None
    return raw
