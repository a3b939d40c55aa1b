"""Campaign creation: a message text and a recipient list in, one personalised message per recipient out.

Creation runs in two passes so that a list of any size streams in flat memory and a campaign owns
one contiguous token range:

1. :class:`~shortcore.recipients.RecipientList` reads the list (CSV or JSON), keeps the accepted
   recipients in a temporary file and counts them, with every invalid and duplicate row and its
   reason;
2. the range ``recipients * links`` is allocated, and ``MessageBatches`` renders the spooled
   recipients a batch at a time in Rust (``messages.rs``, on every core), straight into
   ``RowBinary`` rows for the analytics store's ``messages`` table, from which the sender's output
   is read. A/B variant campaigns take the same path, each recipient's text picked in Rust too.

The store side (allocation, routing data, inserts and their undo) lives with the control API; this
module has no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from shortcore._core import MESSAGE_COLUMNS as _MESSAGE_COLUMNS
from shortcore._core import VARIANT_COLUMN, MessageRows, VariantAssigner
from shortcore.links import MessageTemplate, RenderedMessage
from shortcore.recipients import Recipient, RecipientList, Rejection
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


# Column order of the analytics store's `messages` table as MessageRows writes the rows (from the
# Rust core, which writes them); a variant campaign's rows end with the variant.
MESSAGE_COLUMNS: Final = _MESSAGE_COLUMNS
VARIANT_MESSAGE_COLUMNS: Final = (*MESSAGE_COLUMNS, VARIANT_COLUMN)


@dataclass(frozen=True, slots=True)
class CampaignRange:
    """Where a campaign's messages point: its id and account, domain base URL and token range."""

    campaign_id: str
    account: str
    base_url: str
    seq_start: int
    sent_at: dt.datetime | None = None


class MessageBatches:
    """Renders a read :class:`RecipientList` in batches, in Rust, into ``RowBinary`` rows of the
    analytics store's ``messages`` table (:attr:`columns`): no Python object per row.

    One text, or A/B variants: ``variants`` as ``(name, template)`` pairs with the campaign's
    ``assigner`` (see :mod:`shortcore.variants`), when each row also gets its variant's name."""

    def __init__(
        self,
        template: MessageTemplate,
        codec: TokenCodec,
        campaign: CampaignRange,
        *,
        variants: Sequence[tuple[str, MessageTemplate]] = (),
        assigner: VariantAssigner | None = None,
    ) -> None:
        self._names = [name for name, _ in variants]
        self._templates = [t for _, t in variants] or [template]
        self.columns = VARIANT_MESSAGE_COLUMNS if variants else MESSAGE_COLUMNS
        self._rows = MessageRows(
            list(variants) if variants else template,
            codec,
            campaign_id=campaign.campaign_id,
            account=campaign.account,
            base_url=campaign.base_url,
            seq_start=campaign.seq_start,
            created_at_ms=int(dt.datetime.now(dt.UTC).timestamp() * 1000),
            sent_at_ms=None if campaign.sent_at is None else int(campaign.sent_at.timestamp() * 1000),
            assigner=assigner,
        )

    def encode(self, recipients: RecipientList, size: int) -> bytes | None:
        """The next ``size`` recipients' rows, or None when every recipient is rendered."""
        return self._rows.encode(recipients.spool, size)

    def chunks(self, recipients: RecipientList, size: int) -> Iterator[bytes]:
        """Every remaining recipient's rows, ``size`` recipients a chunk. The next chunk is rendered
        on another thread while the caller stores this one (both run without the GIL)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shortcore-render") as ahead:
            pending = ahead.submit(self.encode, recipients, size)
            while (chunk := pending.result()) is not None:
                pending = ahead.submit(self.encode, recipients, size)
                yield chunk

    @property
    def totals(self) -> MessageTotals:
        rows = self._rows
        return MessageTotals(rows.messages, rows.segments, rows.segments_before)

    @property
    def per_variant(self) -> list[int]:
        """Messages of each variant so far (one count for one text)."""
        return self._rows.per_variant

    def first_row(self) -> dict[str, Any] | None:
        """The first recipient's message row (see :func:`message_row`), once rendered; with
        variants, also its ``variant``."""
        first = self._rows.first
        if first is None:
            return None
        (line, phone, recipient_id, fields), message, variant = first
        recipient = Recipient(line, phone, recipient_id, dict(fields))
        row = message_row(recipient, message, self._templates[variant].original_size.segments)
        if self._names:
            row["variant"] = self._names[variant]
        return row


@dataclass(frozen=True, slots=True)
class MessageTotals:
    messages: int = 0
    segments: int = 0
    segments_before: int = 0


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
