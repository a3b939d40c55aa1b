from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shortcore import InvalidArgumentError, ShortcoreError
from shortcore.tokens import DEFAULT_TOKEN_LENGTH, TokenCodec

ALPHABET = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
CODECS = {length: TokenCodec(b"python test secret", length) for length in range(6, 13)}


@given(length=st.integers(6, 12), data=st.data())
def test_round_trip(length: int, data: st.DataObject) -> None:
    codec = CODECS[length]
    seq = data.draw(st.integers(0, codec.max_seq))
    token = codec.encode(seq)
    assert len(token) == length
    assert set(token) <= ALPHABET
    assert codec.decode(token) == seq
    assert codec.decode(token.encode()) == seq


@given(st.text(max_size=30) | st.binary(max_size=30))
def test_decode_is_total(value: str | bytes) -> None:
    result = CODECS[7].decode(value)
    if result is not None:
        token = CODECS[7].encode(result)
        assert token == (value if isinstance(value, str) else value.decode())


def test_defaults_and_boundaries() -> None:
    codec = TokenCodec(b"k")
    assert codec.length == DEFAULT_TOKEN_LENGTH == 7
    assert codec.max_seq == 62**7 - 1
    assert codec.decode(codec.encode(codec.max_seq)) == codec.max_seq
    assert TokenCodec(b"k", 11).max_seq == 2**64 - 1
    with pytest.raises(InvalidArgumentError):
        codec.encode(62**7)
    with pytest.raises(InvalidArgumentError):
        codec.encode(-1)
    with pytest.raises(InvalidArgumentError):
        TokenCodec(b"k", 11).encode(2**64)
    for bad in [None, 7, 1.5, ["abc"], "", "a" * 10_000, "abc\x00def", "\ud800abcdef"]:
        assert codec.decode(bad) is None


def test_encode_range_matches_encode_and_is_unique() -> None:
    codec = CODECS[7]
    tokens = codec.encode_range(10**9, 50_000)
    assert len(set(tokens)) == 50_000
    assert tokens[:100] == [codec.encode(10**9 + i) for i in range(100)]
    assert codec.encode_range(0, 0) == []
    with pytest.raises(InvalidArgumentError):
        codec.encode_range(codec.max_seq, 2)
    with pytest.raises(InvalidArgumentError):
        codec.encode_range(-5, 2)


def test_construction_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="empty"):
        TokenCodec(b"")
    for length in (0, 5, 13):
        with pytest.raises(InvalidArgumentError, match="between 6 and 12"):
            TokenCodec(b"k", length)
    with pytest.raises(TypeError):
        TokenCodec("not bytes")  # type: ignore[arg-type]
    assert issubclass(InvalidArgumentError, ShortcoreError)
    assert issubclass(InvalidArgumentError, ValueError)


def test_foreign_key_tokens_miss_values_in_use() -> None:
    # 10^5 foreign tokens against 10^5 numbers in use: expected hits 10^10 / 62^7 ≈ 0.003.
    ours, theirs = TokenCodec(b"ours"), TokenCodec(b"theirs")
    decoded = (ours.decode(t) for t in theirs.encode_range(0, 100_000))
    assert sum(1 for seq in decoded if seq is not None and seq < 100_000) == 0


def test_encode_range_releases_the_gil() -> None:
    codec = CODECS[7]
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    thread = threading.Thread(target=count)
    thread.start()
    try:
        before = ticks
        codec.encode_range(0, 3_000_000)  # ~0.2 s of Rust work
        during = ticks - before
    finally:
        done.set()
        thread.join()
    # With the GIL held for the whole call the other thread could not count at all.
    assert during > 1_000
