from __future__ import annotations

import io

import pytest

from shortcore.recipients import Recipient, RecipientList, RecipientsError


def read_csv(text: str | bytes, chunk_bytes: int = 1 << 20) -> RecipientList:
    recipients = RecipientList("DE")
    recipients.read_csv(io.BytesIO(text.encode() if isinstance(text, str) else text), chunk_bytes=chunk_bytes)
    return recipients


def accepted(recipients: RecipientList) -> list[Recipient]:
    return [r for batch in recipients.batches(1_000) for r in batch]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 1 << 20])
def test_csv_accepts_normalises_and_reports_every_row(chunk_bytes: int) -> None:
    text = (
        "\ufeffPhone,ID,first_name\n"
        "+4915123456789,a1,Ana\n"
        "0151 23456780,,Ben\n"
        "\n"
        "not a number,c3,Cy\n"
        "+49 151 23456789,d4,Dup\n"
        '"+44 7911 123456",e5,"Eve, Jr."\n'
        "+4915123456781,f6\n"
    )
    result = read_csv(text, chunk_bytes)
    assert [(r.line, r.phone, r.id, dict(r.fields)) for r in accepted(result)] == [
        (2, "+4915123456789", "a1", {"first_name": "Ana"}),
        (3, "+4915123456780", None, {"first_name": "Ben"}),
        (7, "+447911123456", "e5", {"first_name": "Eve, Jr."}),
    ]
    assert [(r.line, r.reason) for r in result.invalid()] == [
        (5, "not a phone number"),
        (8, "has 2 fields, header has 3"),
    ]
    duplicates = [(r.line, r.value, r.reason) for r in result.duplicates()]
    assert duplicates == [(6, "+49 151 23456789", "duplicate of line 2")]
    assert (result.recipients, result.invalid_count, result.duplicate_count, result.rows_read) == (3, 2, 1, 6)


def test_csv_line_numbers_count_quoted_line_breaks_and_crlf() -> None:
    text = 'phone,note\r\n+4915123456789,"two\r\nlines"\r\n+4915123456780,x\r\nbad,y'
    result = read_csv(text, chunk_bytes=3)
    assert [(r.line, dict(r.fields)["note"]) for r in accepted(result)] == [
        (3, "two\r\nlines"),
        (4, "x"),
    ]
    assert [r.line for r in result.invalid()] == [5]


def test_csv_streams_in_batches() -> None:
    rows = "".join(f"+49151{i:08d}\n" for i in range(2_500))
    batches = list(read_csv("phone\n" + rows, chunk_bytes=4_096).batches(1_000))
    assert [len(b) for b in batches] == [1_000, 1_000, 500]
    assert batches[-1][-1].line == 2_501


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"name,id\nAna,1\n", "no 'phone' column"),
        (b"phone,phone\n1,2\n", "twice"),
        (b'phone\n"+49151\0\n', "line 2"),
        (b'phone\n"+4915123456789\n', "line 2: unexpected end of data"),
        (b"phone\n+4915123456789\n\xff\xfe\n", "line 3: the file is not UTF-8 text"),
        (",".join(f"c{i}" for i in range(101)).encode() + b",phone\n", "columns"),
    ],
)
def test_csv_that_cannot_be_read(text: bytes, message: str) -> None:
    with pytest.raises(RecipientsError, match=message):
        read_csv(text)


def test_overlong_fields_are_rejected_per_row() -> None:
    result = read_csv("phone,note\n+4915123456789," + "x" * 5_000 + "\n+4915123456780,ok\n")
    assert [r.line for r in result.invalid()] == [2]
    assert [r.line for r in accepted(result)] == [3]
    # Characters, not bytes: 1,000 two-byte characters are allowed.
    assert read_csv("phone,note\n+4915123456789," + "é" * 1_000 + "\n").recipients == 1


def test_rejections_are_reported_up_to_a_limit_and_all_counted() -> None:
    recipients = RecipientList("DE", max_rejections=3)
    recipients.read_csv(io.BytesIO(b"phone\n" + b"nope\n" * 10 + b"+4915123456789\n" * 5))
    assert [r.line for r in recipients.invalid()] == [2, 3, 4]
    assert [r.line for r in recipients.duplicates()] == [13, 14, 15]
    assert (recipients.invalid_count, recipients.duplicate_count, recipients.recipients) == (10, 4, 1)


def test_unknown_region() -> None:
    with pytest.raises(ValueError, match="region"):
        RecipientList("XX")


def test_json_records() -> None:
    recipients = RecipientList("DE")
    records: list[object] = [
        "+4915123456789",
        {"phone": "0151 23456780", "id": 7, "plan": "gold", "vip": True},
        {"phone": 4915123456781},
        {"id": "no phone"},
        ["not", "an", "object"],
        {"phone": "+4915123456789"},
        {"phone": "+4915123456782", "id": {"nested": 1}},
    ]
    recipients.read_records(records)
    assert [(r.line, r.phone, r.id, dict(r.fields)) for r in accepted(recipients)] == [
        (1, "+4915123456789", None, {}),
        (2, "+4915123456780", "7", {"plan": "gold", "vip": "True"}),
    ]
    assert [r.line for r in recipients.invalid()] == [3, 4, 5, 7]
    assert [r.line for r in recipients.duplicates()] == [6]
    assert recipients.recipients == 2
