from __future__ import annotations

import pytest

from shortcore.sms import MessageSize, measure

from conftest import expand_sms_spec, sms_cases


@pytest.mark.parametrize(("spec", "encoding", "characters", "units", "segments"), sms_cases())
def test_golden_table(spec: str, encoding: str, characters: int, units: int, segments: int) -> None:
    size = measure(expand_sms_spec(spec))
    assert (size.encoding, size.characters, size.units, size.segments) == (encoding, characters, units, segments)


def test_table_is_large_enough() -> None:
    assert len(sms_cases()) >= 40


def test_size_is_a_value() -> None:
    assert measure("abc") == measure("xyz")
    assert measure("abc") != measure("abcd")
    assert len({measure("abc"), measure("xyz")}) == 1
    assert isinstance(measure(""), MessageSize)
    assert "GSM-7" in repr(measure("a"))


def test_characters_match_python_len() -> None:
    for text in ["", "héllo", "😀😀", "日本語", "a\u0301"]:
        assert measure(text).characters == len(text)


def test_lone_surrogates_are_rejected_cleanly() -> None:
    # Python strings can hold lone surrogates; they are not valid text for an SMS.
    with pytest.raises(UnicodeEncodeError):
        measure("\ud800")


def test_wrong_type() -> None:
    with pytest.raises(TypeError):
        measure(b"bytes")  # type: ignore[arg-type]
