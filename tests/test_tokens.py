from shortcore.tokens import TokenCodec


def test_round_trip_smoke() -> None:
    codec = TokenCodec(b"secret")
    assert codec.decode(codec.encode(12345)) == 12345
