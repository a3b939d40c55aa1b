"""Type stubs for the Rust core, ``shortcore._core``. Keep in step with rust/shortcore-python."""

from collections.abc import Iterable, Mapping
from typing import final

__all__ = [
    "CLASSIFIER_HEADERS",
    "Classification",
    "Classifier",
    "InvalidArgumentError",
    "ShortcoreError",
    "TokenCodec",
    "UserAgent",
    "__version__",
    "parse_user_agent",
]

__version__: str

class ShortcoreError(Exception):
    """Base class of every error raised by shortcore."""

class InvalidArgumentError(ShortcoreError, ValueError):
    """A value passed to shortcore is outside what it accepts."""

@final
class TokenCodec:
    """Encodes sequence numbers as fixed-length base62 tokens and back, under one secret key."""

    def __new__(cls, secret: bytes, length: int = 7) -> TokenCodec:
        """Raises InvalidArgumentError for an empty secret or a length outside 6..=12."""
    @property
    def length(self) -> int:
        """Characters in every token."""
    @property
    def max_seq(self) -> int:
        """The largest sequence number this codec can encode."""
    def encode(self, seq: int) -> str:
        """The token of ``seq``; InvalidArgumentError when it is negative or above ``max_seq``."""
    def decode(self, token: object) -> int | None:
        """The sequence number of ``token`` (str or bytes), or None for anything that is not a token."""
    def encode_range(self, start: int, count: int) -> list[str]:
        """Tokens of ``count`` consecutive sequence numbers from ``start``, computed without the GIL."""

CLASSIFIER_HEADERS: tuple[str, ...]
"""Lowercase names of the headers the classifier reads; the edge stores these with each event."""

@final
class UserAgent:
    """What a user agent says about the client."""

    @property
    def browser(self) -> str | None:
        """Browser family ("Chrome", "Mobile Safari", "Instagram"…), or None."""
    @property
    def browser_version(self) -> str | None:
        """Browser major version, or None."""
    @property
    def os(self) -> str | None:
        """OS family ("Android", "iOS", "Windows"…), or None."""
    @property
    def os_version(self) -> str | None:
        """OS major version ("17", "10"; Windows by name: "7", "8.1", "XP"), or None."""
    @property
    def device(self) -> str:
        """One of "mobile", "tablet", "desktop", "bot", "other"."""

@final
class Classification:
    """The verdict on one request: its class, why, and what its user agent says."""

    @property
    def browser(self) -> str | None:
        """Browser family ("Chrome", "Mobile Safari", "Instagram"…), or None."""
    @property
    def browser_version(self) -> str | None:
        """Browser major version, or None."""
    @property
    def os(self) -> str | None:
        """OS family ("Android", "iOS", "Windows"…), or None."""
    @property
    def os_version(self) -> str | None:
        """OS major version ("17", "10"; Windows by name: "7", "8.1", "XP"), or None."""
    @property
    def device(self) -> str:
        """One of "mobile", "tablet", "desktop", "bot", "other"; "bot" when the user agent names a bot."""
    @property
    def label(self) -> str:
        """One of "human", "preview", "bot"."""
    @property
    def reason(self) -> str:
        """Why, e.g. "human", "preview:whatsapp", "bot:ua:python-requests", "bot:head", "bot:too-soon"."""

@final
class Classifier:
    """Classifies requests to short links. Immutable: build once, share across threads."""

    def __new__(cls, too_soon_seconds: float = 2.0) -> Classifier:
        """Requests sooner than ``too_soon_seconds`` after delivery are ``bot:too-soon`` (0 turns the rule
        off); InvalidArgumentError when it is negative, not finite or not a number."""
    @property
    def too_soon_seconds(self) -> float:
        """The threshold of the too-soon rule, in seconds."""
    def classify(
        self,
        ua: str | bytes | None,
        method: str | bytes | None = "GET",
        headers: Mapping[str | bytes, str | bytes] | Iterable[tuple[bytes | str, bytes | str]] | None = None,
        seconds_since_send: float | None = None,
        ip: str | bytes | None = None,
    ) -> Classification:
        """Classifies one request. ``headers`` is a mapping (any key case) or ASGI raw headers; when
        ``ua`` is None the User-Agent header is used. Bytes are decoded lossily. Never raises for odd
        content; InvalidArgumentError for arguments of the wrong type."""
    def classify_many(self, requests: Iterable[Mapping[str, object]]) -> list[Classification]:
        """Classifies a batch of requests given as mappings with the keys of :meth:`classify`
        (``ua``, ``method``, ``headers``, ``seconds_since_send``, ``ip``; all optional), in order,
        without holding the GIL while it works."""

def parse_user_agent(ua: str | bytes | None) -> UserAgent:
    """Browser, OS and device of a user agent; device "bot" when it names a bot or preview fetcher."""
