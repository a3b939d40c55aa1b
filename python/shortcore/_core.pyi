"""Type stubs for the Rust core, ``shortcore._core``. Keep in step with rust/shortcore-python."""

__version__: str

class ShortcoreError(Exception):
    """Base class of every error raised by shortcore."""

class InvalidArgumentError(ShortcoreError, ValueError):
    """A value passed to shortcore is outside what it accepts."""

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
