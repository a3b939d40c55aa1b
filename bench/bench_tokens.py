"""Token encoding: shortcore's batch path against sqids and secrets.token_urlsafe, in one run.

``tokens.rust_per_s`` is ``TokenCodec.encode_range`` from Python (the Rust batch, Python strings
out); ``tokens.sqids_per_s`` is sqids-python encoding the same sequence numbers one by one, the
way a shortener built on it would; ``tokens.ratio`` is the first over the second.
``tokens.token_urlsafe_per_s`` is random tokens from the standard library (which need storing,
unlike ours), for scale. ``tokens.decode_per_s`` is single decodes from Python.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, rate, require_release_build


def run(quick: bool) -> dict[str, float]:
    from sqids import Sqids

    from shortcore.tokens import TokenCodec

    require_release_build()
    codec = TokenCodec(b"bench secret", 7)
    sqids = Sqids(min_length=7)
    batch = 100_000 if quick else 1_000_000
    small = 5_000 if quick else 20_000
    seconds = 0.3 if quick else 1.0
    start = 10**9

    ours = rate(lambda: codec.encode_range(start, batch), batch, seconds)
    theirs = rate(lambda: [sqids.encode([n]) for n in range(start, start + small)], small, seconds)
    urlsafe = rate(lambda: [secrets.token_urlsafe(5) for _ in range(small)], small, seconds)
    tokens = codec.encode_range(start, small)
    decode = rate(lambda: [codec.decode(t) for t in tokens], small, seconds)
    return {
        "tokens.rust_per_s": ours,
        "tokens.sqids_per_s": theirs,
        "tokens.ratio": ours / theirs,
        "tokens.token_urlsafe_per_s": urlsafe,
        "tokens.decode_per_s": decode,
    }


if __name__ == "__main__":
    print(machine())
    for key, value in run(quick="--quick" in sys.argv).items():
        print(f"{key:28} {value:>16,.1f}")
