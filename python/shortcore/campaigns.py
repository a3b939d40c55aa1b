"""Campaign creation: a message text and a recipient list in, one personalised message per recipient out.

Creation runs in two passes so that a list of any size streams in flat memory and a campaign owns
one contiguous token range:

1. ``RecipientSpool`` reads the list (CSV or JSON, through :mod:`shortcore.recipients`), keeps the
   accepted recipients in a temporary file and counts them, with every invalid and duplicate row
   and its reason;
2. the range ``recipients * links`` is allocated, and ``MessageBatches`` renders the spooled
   recipients a batch at a time in Rust (:meth:`MessageTemplate.render_recipients`), giving the
   rows for the analytics store's ``messages`` table and for the sender's output.

The store side (allocation, routing data, inserts and their undo) lives with the control API; this
module has no I/O but the spool file.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson

from shortcore.links import MessageTemplate, RenderedMessage
from shortcore.recipients import Recipient, RecipientBatch, Rejection
from shortcore.tokens import TokenCodec

# Ten concatenated segments is the most most carriers deliver; 1,600 characters allows them with room.
MAX_TEXT_CHARACTERS: Final = 1_600
SCHEMES: Final = ("keep", "drop", "fit")


class CampaignError(ValueError):
    """A campaign that cannot be created as asked; the message says why, for a 4xx."""


def prepare_template(text: object, *, scheme: str = "keep", only_last: bool = False) -> MessageTemplate:
    """Checks a campaign text and prepares it: a non-empty string of at most 1,600 characters (so
    every link is short enough to store) with at least one http(s) or www link."""
    if not isinstance(text, str) or not text.strip():
        raise CampaignError("'text' must be a non-empty string")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise CampaignError(f"'text' has {len(text)} characters; at most {MAX_TEXT_CHARACTERS} are allowed")
    if "\x00" in text:
        raise CampaignError("'text' must not contain NUL characters")
    if scheme not in SCHEMES:
        raise CampaignError(f"'scheme' must be one of {', '.join(SCHEMES)}")
    try:
        template = MessageTemplate(text, scheme=scheme, only_last=only_last)
    except UnicodeEncodeError:
        raise CampaignError("'text' is not valid Unicode") from None
    if not template.destinations:
        raise CampaignError("'text' has no http://, https:// or www. link to shorten")
    return template


@dataclass(slots=True)
class SpoolSummary:
    """What reading the list found."""

    recipients: int = 0
    invalid: list[Rejection] = field(default_factory=list)
    duplicates: list[Rejection] = field(default_factory=list)
    rows_read: int = 0


class RecipientSpool:
    """Accepted recipients in a temporary file, one JSON line each, read back in batches.

    Only rejections are kept in memory (they are reported in full); at most ``max_rejections`` of
    each kind, the rest only counted.
    """

    def __init__(self, directory: str | None = None, max_rejections: int = 10_000) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self._max_rejections = max_rejections
        self.summary = SpoolSummary()
        self.invalid_count = 0
        self.duplicate_count = 0

    def add(self, batch: RecipientBatch) -> None:
        write = self._file.write
        for recipient in batch.accepted:
            write(orjson.dumps([recipient.line, recipient.phone, recipient.id, recipient.fields]))
            write(b"\n")
        self.summary.recipients += len(batch.accepted)
        self.invalid_count += len(batch.invalid)
        self.duplicate_count += len(batch.duplicates)
        room = self._max_rejections
        self.summary.invalid.extend(batch.invalid[: max(0, room - len(self.summary.invalid))])
        self.summary.duplicates.extend(batch.duplicates[: max(0, room - len(self.summary.duplicates))])
        self.summary.rows_read += len(batch.accepted) + len(batch.invalid) + len(batch.duplicates)

    def fill(self, batches: Iterable[RecipientBatch]) -> SpoolSummary:
        for batch in batches:
            self.add(batch)
        return self.summary

    def batches(self, size: int) -> Iterator[list[Recipient]]:
        """The spooled recipients in order, ``size`` at a time."""
        self._file.flush()
        self._file.seek(0)
        batch: list[Recipient] = []
        for raw in self._file:
            line, phone, recipient_id, fields = orjson.loads(raw)
            batch.append(Recipient(line, phone, recipient_id, fields))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecipientSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Column order of the analytics store's `messages` table, as MessageBatches fills it.
MESSAGE_COLUMNS: Final = (
    "campaign_id",
    "account",
    "recipient_index",
    "line",
    "phone",
    "recipient_id",
    "fields",
    "text",
    "encoding",
    "characters",
    "units",
    "segments",
    "segments_before",
    "short_urls",
    "sent_at",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class CampaignRange:
    """Where a campaign's messages point: its id and account, domain base URL and token range."""

    campaign_id: str
    account: str
    base_url: str
    seq_start: int
    sent_at: dt.datetime | None = None


@dataclass(slots=True)
class MessageTotals:
    messages: int = 0
    segments: int = 0
    segments_before: int = 0


class MessageBatches:
    """Renders spooled recipients in batches; yields (columns for the messages table, output rows)."""

    def __init__(self, template: MessageTemplate, codec: TokenCodec, campaign: CampaignRange) -> None:
        self._template = template
        self._codec = codec
        self._campaign = campaign
        self.totals = MessageTotals()
        self._next_index = 0

    def render(self, recipients: Sequence[Recipient]) -> tuple[list[list[Any]], list[dict[str, Any]]]:
        campaign = self._campaign
        first = self._next_index
        rendered: list[RenderedMessage] = self._template.render_recipients(
            self._codec, campaign.base_url, campaign.seq_start, first, len(recipients)
        )
        self._next_index += len(recipients)
        now = dt.datetime.now(dt.UTC)
        n = len(recipients)
        before = self._template.original_size
        columns: list[list[Any]] = [
            [campaign.campaign_id] * n,
            [campaign.account] * n,
            list(range(first, first + n)),
            [r.line for r in recipients],
            [r.phone for r in recipients],
            [r.id or "" for r in recipients],
            [r.fields for r in recipients],
            [m.text for m in rendered],
            [m.after.encoding for m in rendered],
            [m.after.characters for m in rendered],
            [m.after.units for m in rendered],
            [m.after.segments for m in rendered],
            [before.segments] * n,
            [m.short_urls for m in rendered],
            [campaign.sent_at] * n,
            [now] * n,
        ]
        rows = [message_row(r, m, before.segments) for r, m in zip(recipients, rendered, strict=True)]
        totals = self.totals
        totals.messages += n
        totals.segments += sum(columns[11])
        totals.segments_before += before.segments * n
        return columns, rows


def message_row(recipient: Recipient, message: RenderedMessage, segments_before: int) -> dict[str, Any]:
    """One row of ``GET /campaigns/{id}/messages`` and of ``campaign create --out``."""
    return {
        "phone": recipient.phone,
        "id": recipient.id,
        "text": message.text,
        "encoding": message.after.encoding,
        "characters": message.after.characters,
        "segments": message.after.segments,
        "segments_before": segments_before,
        "links": message.short_urls,
        **({"fields": dict(recipient.fields)} if recipient.fields else {}),
    }


def rejection_report(rejections: Iterable[Rejection]) -> list[Mapping[str, object]]:
    return [{"line": r.line, "value": r.value, "reason": r.reason} for r in rejections]
