"""Short-link tokens.

A token is a keyed, format-preserving permutation of a 64-bit sequence number written in base62
at a fixed length (6 to 12 characters). Campaigns own contiguous ranges of sequence numbers, so
the edge routes a token from campaign-level data alone. See ``DESIGN.md``.
"""

from shortcore._core import TokenCodec

# Must match `DEFAULT_LENGTH` in rust/shortcore/src/tokens.rs.
DEFAULT_TOKEN_LENGTH = 7

__all__ = ["DEFAULT_TOKEN_LENGTH", "TokenCodec"]
