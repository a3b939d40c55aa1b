from __future__ import annotations

import io

import pytest

from shortcore.phones import PhoneNormalizer
from shortcore.recipients import RecipientBatch, RecipientReader, RecipientsError


def read_csv(text: str, batch_size: int = 1_000) -> list[RecipientBatch]:
    reader = RecipientReader(PhoneNormalizer("DE"), batch_size=batch_size)
    return list(reader.read_csv(io.StringIO(text)))


def merged(batches: list[RecipientBatch]) -> RecipientBatch:
    out = RecipientBatch()
    for batch in batches:
        out.accepted += batch.accepted
        out.invalid += batch.invalid
        out.duplicates += batch.duplicates
    return out


def test_csv_accepts_normalises_and_reports_every_row() -> None:
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
    result = merged(read_csv(text))
    assert [(r.line, r.phone, r.id, dict(r.fields)) for r in result.accepted] == [
        (2, "+4915123456789", "a1", {"first_name": "Ana"}),
        (3, "+4915123456780", None, {"first_name": "Ben"}),
        (7, "+447911123456", "e5", {"first_name": "Eve, Jr."}),
    ]
    assert [(r.line, r.reason) for r in result.invalid] == [
        (5, "not a phone number"),
        (8, "has 2 fields, header has 3"),
    ]
    assert [(r.line, r.value, r.reason) for r in result.duplicates] == [(6, "+49 151 23456789", "duplicate of line 2")]


def test_csv_streams_in_batches() -> None:
    rows = "".join(f"+49151{i:08d}\n" for i in range(2_500))
    batches = read_csv("phone\n" + rows, batch_size=1_000)
    assert [len(b.accepted) for b in batches] == [1_000, 1_000, 500]
    assert batches[-1].accepted[-1].line == 2_501


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("name,id\nAna,1\n", "no 'phone' column"),
        ("phone,phone\n1,2\n", "twice"),
        ('phone\n"+49151\0\n', "line"),
        (",".join(f"c{i}" for i in range(101)) + ",phone\n", "columns"),
    ],
)
def test_csv_that_cannot_be_read(text: str, message: str) -> None:
    with pytest.raises(RecipientsError, match=message):
        read_csv(text)


def test_overlong_fields_are_rejected_per_row() -> None:
    result = merged(read_csv("phone,note\n+4915123456789," + "x" * 5_000 + "\n+4915123456780,ok\n"))
    assert [r.line for r in result.invalid] == [2]
    assert [r.line for r in result.accepted] == [3]


def test_json_records() -> None:
    reader = RecipientReader(PhoneNormalizer("DE"))
    records: list[object] = [
        "+4915123456789",
        {"phone": "0151 23456780", "id": 7, "plan": "gold", "vip": True},
        {"phone": 4915123456781},
        {"id": "no phone"},
        ["not", "an", "object"],
        {"phone": "+4915123456789"},
        {"phone": "+4915123456782", "id": {"nested": 1}},
    ]
    result = merged(list(reader.read_records(records)))
    assert [(r.line, r.phone, r.id, dict(r.fields)) for r in result.accepted] == [
        (1, "+4915123456789", None, {}),
        (2, "+4915123456780", "7", {"plan": "gold", "vip": "True"}),
    ]
    assert [r.line for r in result.invalid] == [3, 4, 5, 7]
    assert [r.line for r in result.duplicates] == [6]
    assert reader.accepted_count == 2
