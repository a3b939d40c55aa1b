from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest
from clickhouse_connect.driver.client import Client

from shortcore.analytics import DATABASE, migrate
from shortcore.campaigns import (
    MAX_TEXT_CHARACTERS,
    MESSAGE_COLUMNS,
    CampaignError,
    CampaignRange,
    MessageBatches,
    prepare_template,
)
from shortcore.recipients import RecipientList
from shortcore.tokens import TokenCodec

TEXT = "Hi! 20% off: https://shop.example/spring?id=1 and www.shop.example/stores"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        (None, "non-empty"),
        (42, "non-empty"),
        ("no links at all", "no http"),
        ("javascript:alert(1) and /relative/path", "no http"),
        ("x" * 50_000 + " https://a.example", "50018 characters"),
        ("nul\x00 https://a.example", "NUL"),
    ],
)
def test_bad_texts(text: object, message: str) -> None:
    with pytest.raises(CampaignError, match=message):
        prepare_template(text)


def test_text_limits_and_scheme() -> None:
    assert prepare_template("x" * (MAX_TEXT_CHARACTERS - 20) + " https://a.example").destinations == [
        "https://a.example"
    ]
    with pytest.raises(CampaignError, match="scheme"):
        prepare_template(TEXT, scheme="sometimes")


def test_spool_and_render_end_to_end(chdb_client: Client) -> None:
    migrate(chdb_client)
    csv = "phone,id,name\n" + "".join(f"+49151{i:08d},r{i},N{i}\n" for i in range(2_500))
    csv += "garbage,x,y\n+4915100000000,dup,D\n"
    codec = TokenCodec(b"campaign test")
    template = prepare_template(TEXT)
    campaign_id = f"c-{uuid.uuid4()}"
    recipients = RecipientList("DE")
    recipients.read_csv(io.BytesIO(csv.encode()), chunk_bytes=10_000)
    assert (recipients.recipients, recipients.invalid_count, recipients.duplicate_count) == (2_500, 1, 1)
    assert recipients.invalid()[0].line == 2_502 and recipients.duplicates()[0].reason == "duplicate of line 2"
    seq_start = 7_000_000
    sent_at = dt.datetime(2026, 5, 1, 12, 30, 0, 125_000, tzinfo=dt.UTC)
    where = CampaignRange(campaign_id, "acct", "https://ul.example", seq_start, sent_at)
    batches = MessageBatches(template, codec, where)
    for body in batches.chunks(recipients, 1_000):
        chdb_client.raw_insert(f"{DATABASE}.messages", MESSAGE_COLUMNS, insert_block=body, fmt="RowBinary")
    assert batches.totals.messages == 2_500
    first = batches.first_row()
    assert first is not None
    assert first["phone"] == "+4915100000000" and first["id"] == "r0" and first["fields"] == {"name": "N0"}
    rows = chdb_client.query(
        f"SELECT recipient_index, line, phone, recipient_id, fields, text, encoding, characters, units, segments, "
        f"segments_before, short_urls, sent_at, account FROM {DATABASE}.messages FINAL WHERE campaign_id = %(c)s "
        "ORDER BY recipient_index",
        parameters={"c": campaign_id},
    ).named_results()
    stored = list(rows)
    assert len(stored) == 2_500
    assert batches.totals.segments == sum(row["segments"] for row in stored)
    assert batches.totals.segments_before == 2_500 * template.original_size.segments
    for index in (0, 1, 999, 1_000, 2_499):
        row = stored[index]
        expected = template.render_recipients(codec, "https://ul.example", seq_start, index, 1)[0]
        assert (row["recipient_index"], row["line"], row["phone"]) == (index, index + 2, f"+49151{index:08d}")
        assert (row["recipient_id"], row["fields"], row["account"]) == (f"r{index}", {"name": f"N{index}"}, "acct")
        assert (row["text"], row["short_urls"]) == (expected.text, expected.short_urls)
        assert (row["encoding"], row["characters"], row["units"], row["segments"]) == (
            expected.after.encoding,
            expected.after.characters,
            expected.after.units,
            expected.after.segments,
        )
        assert row["segments_before"] == template.original_size.segments
        assert row["sent_at"].replace(tzinfo=dt.UTC) == sent_at
        # Recipient r's link l is the token of seq_start + r * 2 + l, and decodes back to it.
        for link, url in enumerate(row["short_urls"]):
            assert codec.decode(url.rsplit("/", 1)[1]) == seq_start + index * 2 + link
            assert url in row["text"]
    assert first == {
        "phone": stored[0]["phone"],
        "id": "r0",
        "text": stored[0]["text"],
        "encoding": stored[0]["encoding"],
        "characters": stored[0]["characters"],
        "segments": stored[0]["segments"],
        "segments_before": stored[0]["segments_before"],
        "links": stored[0]["short_urls"],
        "fields": {"name": "N0"},
    }


def test_message_columns_are_the_tables(chdb_client: Client) -> None:
    migrate(chdb_client)
    names = chdb_client.query(
        "SELECT name FROM system.columns WHERE database = %(d)s AND table = 'messages' ORDER BY position",
        parameters={"d": DATABASE},
    ).result_rows
    # One-text campaigns leave the last column, the A/B variant, to its default ('').
    assert tuple(name for (name,) in names) == (*MESSAGE_COLUMNS, "variant")


def test_unicode_recipients_and_no_sent_at(chdb_client: Client) -> None:
    migrate(chdb_client)
    template = prepare_template("Grüße 👋 https://a.example")
    codec = TokenCodec(b"k")
    recipients = RecipientList(None)
    recipients.read_records([{"phone": "+4915123456789", "id": "ü", "stadt": 'Köln, "Süd"'}])
    campaign_id = f"c-{uuid.uuid4()}"
    batches = MessageBatches(template, codec, CampaignRange(campaign_id, "acct", "https://ul.example", 1))
    body = batches.encode(recipients, 10)
    assert body is not None and batches.encode(recipients, 10) is None
    chdb_client.raw_insert(f"{DATABASE}.messages", MESSAGE_COLUMNS, insert_block=body, fmt="RowBinary")
    [(rid, fields, text, encoding, sent_at)] = chdb_client.query(
        f"SELECT recipient_id, fields, text, encoding, sent_at FROM {DATABASE}.messages WHERE campaign_id = %(c)s",
        parameters={"c": campaign_id},
    ).result_rows
    assert (rid, fields, encoding, sent_at) == ("ü", {"stadt": 'Köln, "Süd"'}, "UCS-2", None)
    assert text.startswith("Grüße 👋 https://ul.example/")
