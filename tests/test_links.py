from __future__ import annotations

from typing import Any

import pytest

from shortcore import InvalidArgumentError
from shortcore.links import MessageTemplate, find_links, rewrite
from shortcore.sms import measure

from conftest import link_cases


@pytest.mark.parametrize("case", link_cases(), ids=lambda c: str(c["name"]))
def test_detection_table(case: dict[str, Any]) -> None:
    found = find_links(case["text"])
    assert [link for _, _, link in found] == case["links"]
    for start, end, link in found:
        assert case["text"][start:end] == link  # offsets are Python character offsets


def test_template_and_render() -> None:
    text = "Привет! Sale https://shop.example/a and www.shop.example/b 😀"
    template = MessageTemplate(text)
    assert template.text == text
    assert template.destinations == ["https://shop.example/a", "https://www.shop.example/b"]
    assert [link for _, _, link in template.links] == ["https://shop.example/a", "www.shop.example/b"]
    assert template.original_size == measure(text)
    message = template.render(["https://ul.example/AAAAAAA", "https://ul.example/BBBBBBB"])
    assert message.text == "Привет! Sale https://ul.example/AAAAAAA and https://ul.example/BBBBBBB 😀"
    assert [message.text[s:e] for s, e in message.links] == ["https://ul.example/AAAAAAA", "https://ul.example/BBBBBBB"]
    assert message.before == measure(text)
    assert message.after == measure(message.text)


def test_render_many_matches_render() -> None:
    template = MessageTemplate("A https://a.example/1 B https://b.example/2", scheme="drop")
    urls = [[f"https://ul.example/{i:07d}", f"https://ul.example/{i + 1:07d}"] for i in range(100)]
    many = template.render_many(urls)
    assert [m.text for m in many] == [template.render(u).text for u in urls]
    assert many[0].text == "A ul.example/0000000 B ul.example/0000001"


def test_only_last_and_fit() -> None:
    text = "One https://a.example/1 two https://b.example/2"
    message = rewrite(text, ["https://ul.example/z"], only_last=True)
    assert message.text == "One https://a.example/1 two https://ul.example/z"
    filler = "x" * 108
    fitted = rewrite(
        f"{filler} A https://a.example/1 B https://b.example/2", ["https://u.example/AAAAAAAA"] * 2, scheme="fit"
    )
    kept = rewrite(f"{filler} A https://a.example/1 B https://b.example/2", ["https://u.example/AAAAAAAA"] * 2)
    assert fitted.after.segments <= kept.after.segments
    assert (
        fitted.after.segments
        == rewrite(
            f"{filler} A https://a.example/1 B https://b.example/2", ["https://u.example/AAAAAAAA"] * 2, scheme="drop"
        ).after.segments
    )


def test_bad_input() -> None:
    with pytest.raises(InvalidArgumentError, match="scheme"):
        MessageTemplate("x https://a.example", scheme="sometimes")
    template = MessageTemplate("x https://a.example")
    with pytest.raises(InvalidArgumentError, match="1 link"):
        template.render([])
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError
        template.render(["a", "b"])
    with pytest.raises(TypeError):
        template.render("https://ul.example/x")  # type: ignore[arg-type]
    assert find_links("") == []
    assert find_links("no links at all") == []
    huge = "word " * 10_000 + "https://example.com/end"
    assert find_links(huge) == [(len(huge) - 23, len(huge), "https://example.com/end")]


def test_render_recipients_routes_by_sequence_number() -> None:
    from shortcore.tokens import TokenCodec

    codec = TokenCodec(b"campaign test")
    template = MessageTemplate("A https://a.example/1 B https://b.example/2", scheme="drop")
    messages = template.render_recipients(codec, "https://ul.example/", 5_000, 10, 3)
    assert len(messages) == 3
    for offset, message in enumerate(messages):
        recipient = 10 + offset
        want = [f"https://ul.example/{codec.encode(5_000 + recipient * 2 + link)}" for link in range(2)]
        assert message.short_urls == want
        assert message.text == f"A {want[0][8:]} B {want[1][8:]}"
    plain = MessageTemplate("no links").render_recipients(codec, "https://ul.example", 0, 0, 2)
    assert [m.text for m in plain] == ["no links", "no links"]
    with pytest.raises(InvalidArgumentError):
        template.render_recipients(codec, "https://ul.example", codec.max_seq, 0, 1)
    with pytest.raises(OverflowError):
        template.render_recipients(codec, "https://ul.example", -1, 0, 1)
