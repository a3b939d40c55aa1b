from __future__ import annotations

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
    RecipientSpool,
    prepare_template,
)
from shortcore.phones import PhoneNormalizer
from shortcore.recipients import RecipientReader
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
    reader = RecipientReader(PhoneNormalizer("DE"), batch_size=1_000)
    codec = TokenCodec(b"campaign test")
    template = prepare_template(TEXT)
    campaign_id = f"c-{uuid.uuid4()}"
    with RecipientSpool() as spool:
        summary = spool.fill(reader.read_csv(io.StringIO(csv)))
        assert (summary.recipients, spool.invalid_count, spool.duplicate_count) == (2_500, 1, 1)
        assert summary.invalid[0].line == 2_502 and summary.duplicates[0].reason == "duplicate of line 2"
        seq_start = 7_000_000
        batches = MessageBatches(template, codec, CampaignRange(campaign_id, "acct", "https://ul.example", seq_start))
        out = []
        for recipients in spool.batches(1_000):
            columns, rows = batches.render(recipients)
            chdb_client.insert(f"{DATABASE}.messages", columns, column_names=MESSAGE_COLUMNS, column_oriented=True)
            out.extend(rows)
    assert batches.totals.messages == 2_500
    assert batches.totals.segments == sum(row["segments"] for row in out)
    assert out[0]["phone"] == "+4915100000000" and out[0]["id"] == "r0" and out[0]["fields"] == {"name": "N0"}
    # Recipient r's link l is the token of seq_start + r * 2 + l, and decodes back to it.
    for index in (0, 1, 2_499):
        for link, url in enumerate(out[index]["links"]):
            assert codec.decode(url.rsplit("/", 1)[1]) == seq_start + index * 2 + link
            assert url in out[index]["text"]
    stored = chdb_client.query(
        f"SELECT count(), uniqExact(phone), max(recipient_index), any(segments_before) "
        f"FROM {DATABASE}.messages FINAL WHERE campaign_id = %(c)s",
        parameters={"c": campaign_id},
    ).result_rows
    assert stored == [(2_500, 2_500, 2_499, template.original_size.segments)]
