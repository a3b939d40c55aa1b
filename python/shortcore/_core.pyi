"""Type stubs for the Rust core, ``shortcore._core``. Keep in step with rust/shortcore-python."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, final

__all__ = [
    "CLASSIFIER_HEADERS",
    "MESSAGE_COLUMNS",
    "VARIANT_COLUMN",
    "Classification",
    "Classifier",
    "EncodedRows",
    "EventBatch",
    "EventDecoder",
    "FirstSeen",
    "InvalidArgumentError",
    "MessageRows",
    "MessageSize",
    "MessageTemplate",
    "PhoneNormalizer",
    "RecipientSpool",
    "RenderedMessage",
    "ShortcoreError",
    "StreamEntries",
    "TokenCodec",
    "UserAgent",
    "VariantAssigner",
    "VariantLinks",
    "__version__",
    "build_profile",
    "find_links",
    "measure",
    "parse_user_agent",
    "rewrite",
]

__version__: str
build_profile: str  # "release" or "debug"

class ShortcoreError(Exception):
    """Base class of every error raised by shortcore."""

class InvalidArgumentError(ShortcoreError, ValueError):
    """A value passed to shortcore is outside what it accepts."""

@final
class TokenCodec:
    """Encodes sequence numbers as fixed-length base62 tokens and back, under one secret key."""

    def __new__(cls, secret: bytes, length: int = 7) -> TokenCodec:
        """Raises InvalidArgumentError for an empty secret or a length outside 6..=12."""
    @property
    def length(self) -> int:
        """Characters in every token."""
    @property
    def max_seq(self) -> int:
        """The largest sequence number this codec can encode."""
    def encode(self, seq: int) -> str:
        """The token of ``seq``; InvalidArgumentError when it is negative or above ``max_seq``."""
    def decode(self, token: object) -> int | None:
        """The sequence number of ``token`` (str or bytes), or None for anything that is not a token."""
    def encode_range(self, start: int, count: int) -> list[str]:
        """Tokens of ``count`` consecutive sequence numbers from ``start``, computed without the GIL."""

@final
class MessageSize:
    """The size of a message text as an SMS."""

    @property
    def encoding(self) -> str:
        """``"GSM-7"`` or ``"UCS-2"``."""
    @property
    def characters(self) -> int:
        """Unicode characters, as ``len()`` counts them."""
    @property
    def units(self) -> int:
        """Length in septets (GSM-7, extension characters count two) or UTF-16 code units (UCS-2)."""
    @property
    def segments(self) -> int:
        """SMS parts the message is billed as (160/153 septets, 70/67 units; pairs never split)."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

def measure(text: str) -> MessageSize:
    """Measures ``text`` as an SMS."""

def find_links(text: str) -> list[tuple[int, int, str]]:
    """Every ``http(s)://`` and bare ``www.`` link in ``text`` as ``(start, end, link)``, in characters."""

@final
class RenderedMessage:
    """One recipient's message with its short links."""

    @property
    def text(self) -> str:
        """The message with short links."""
    @property
    def links(self) -> list[tuple[int, int]]:
        """Character offsets ``(start, end)`` of each short link in ``text``."""
    @property
    def short_urls(self) -> list[str]:
        """The short links, each with its scheme whether or not the text drops it."""
    @property
    def before(self) -> MessageSize:
        """The original text's size."""
    @property
    def after(self) -> MessageSize:
        """The rendered text's size."""

@final
class MessageTemplate:
    """A message text prepared once and rendered for each recipient with their short links."""

    def __new__(cls, text: str, *, scheme: str = "keep", only_last: bool = False) -> MessageTemplate:
        """``scheme`` is ``"keep"``, ``"drop"`` or ``"fit"``; InvalidArgumentError otherwise."""
    @property
    def text(self) -> str:
        """The original text."""
    @property
    def links(self) -> list[tuple[int, int, str]]:
        """Every link in the text as ``(start, end, link)``, shortened or not."""
    @property
    def destinations(self) -> list[str]:
        """The absolute URLs that get a short link, in order."""
    @property
    def original_size(self) -> MessageSize:
        """The original text's size."""
    def render(self, short_urls: list[str]) -> RenderedMessage:
        """The message for one recipient; InvalidArgumentError unless one URL per destination."""
    def render_many(self, short_urls: list[list[str]]) -> list[RenderedMessage]:
        """The messages of many recipients at once, without the GIL."""
    def render_recipients(
        self, codec: TokenCodec, base_url: str, seq_start: int, first_recipient: int, count: int
    ) -> list[RenderedMessage]:
        """Recipient ``r``'s link ``l`` gets the token of ``seq_start + r * len(destinations) + l``
        on ``base_url``; ``count`` recipients from ``first_recipient``, without the GIL."""

def rewrite(text: str, short_urls: list[str], *, scheme: str = "keep", only_last: bool = False) -> RenderedMessage:
    """Rewrites ``text`` with one short URL per link to shorten."""

@final
class PhoneNormalizer:
    """Validates phone numbers (libphonenumber's rules) and writes them in E.164."""

    def __new__(cls, default_region: str | None = None) -> PhoneNormalizer:
        """National numbers are read in ``default_region`` (e.g. ``"DE"``); InvalidArgumentError if unknown."""
    @property
    def default_region(self) -> str | None:
        """The region national numbers are read in, or None."""
    def normalize(self, raw: str) -> str:
        """The number in E.164; InvalidArgumentError with the reason when it is not valid."""
    def normalize_many(self, raws: list[str]) -> list[tuple[str | None, str | None]]:
        """``(e164, None)`` or ``(None, reason)`` per number, in order, on every core without the GIL."""

_Recipient = tuple[int, str, str | None, list[tuple[str, str]]]

@final
class RecipientSpool:
    """A recipient list read into a nameless temporary file: phones normalised to E.164 on every
    core, duplicates found, refused rows kept as ``(line, value, reason)`` (at most
    ``max_rejections`` of each kind, all counted)."""

    def __new__(
        cls, default_region: str | None = None, directory: str | None = None, max_rejections: int = 10_000
    ) -> RecipientSpool:
        """InvalidArgumentError for an unknown region."""
    def feed_csv(self, chunk: bytes) -> None:
        """Reads the next chunk of a CSV list (header first), without the GIL; InvalidArgumentError
        when the file cannot be read as a list."""
    def finish_csv(self) -> None:
        """Reads the end of a CSV list; InvalidArgumentError for an empty file or an open quote."""
    def add(self, rows: list[_Recipient]) -> None:
        """Adds ``(line, phone, id, fields)`` rows whose shape the caller checked."""
    def reject(self, line: int, value: str, reason: str) -> None:
        """Refuses a row for its shape."""
    def finish(self) -> None:
        """Settles the last rows; the spool can then be read."""
    @property
    def recipients(self) -> int:
        """Recipients accepted."""
    @property
    def rows_read(self) -> int:
        """Rows read: accepted, invalid or duplicate."""
    @property
    def invalid_count(self) -> int:
        """Rows refused, in all."""
    @property
    def duplicate_count(self) -> int:
        """Duplicate rows, in all."""
    def invalid(self) -> list[tuple[int, str, str]]:
        """The first refused rows."""
    def duplicates(self) -> list[tuple[int, str, str]]:
        """The first duplicate rows."""
    def read(self, count: int) -> list[_Recipient]:
        """Up to ``count`` accepted recipients ``(line, e164, id, fields)``, in order, after finish()."""

@final
class MessageRows:
    """A campaign's messages rendered from a finished RecipientSpool into RowBinary rows of the
    analytics store's ``messages`` table: one text, or named variants split by an assigner (their
    rows end with the ``variant`` column)."""

    def __new__(
        cls,
        texts: MessageTemplate | Sequence[tuple[str, MessageTemplate]],
        codec: TokenCodec,
        *,
        campaign_id: str,
        account: str,
        base_url: str,
        seq_start: int,
        created_at_ms: int,
        sent_at_ms: int | None = None,
        assigner: VariantAssigner | None = None,
    ) -> MessageRows:
        """``texts``: one template, or ``(name, template)`` pairs with ``assigner`` (one weight each)."""
    def encode(self, spool: RecipientSpool, count: int) -> bytes | None:
        """The next ``count`` recipients' rows, or None at the end; without the GIL, on every core."""
    @property
    def messages(self) -> int:
        """Messages encoded so far."""
    @property
    def segments(self) -> int:
        """Their SMS segments."""
    @property
    def segments_before(self) -> int:
        """The segments the original text would have taken over the same messages."""
    @property
    def per_variant(self) -> list[int]:
        """Messages of each variant so far (one count for one text)."""
    @property
    def first(self) -> tuple[_Recipient, RenderedMessage, int] | None:
        """The first recipient, its message and its variant's index, once encoded."""

@final
class VariantAssigner:
    """Recipient index → variant index: the 8-byte Blake2b of the index (8 bytes, little-endian)
    keyed with ``seed``, against the weights' shares of 2**64 (see ``shortcore.variants``)."""

    def __new__(cls, seed: bytes, weights: Sequence[float]) -> VariantAssigner:
        """InvalidArgumentError for a seed not of 1 to 64 bytes or a weight not finite and > 0."""
    def __len__(self) -> int: ...
    def variant_of(self, recipient: int) -> int:
        """The variant of recipient ``recipient`` (>= 0)."""
    def variants_of(self, first: int, count: int) -> list[int]:
        """The variants of ``count`` consecutive recipients from ``first``, without the GIL."""

@final
class VariantLinks:
    """A variant campaign as the sink needs it: each variant's number of links (the sibling rule)
    and name (written with each event of its recipients)."""

    def __new__(cls, assigner: VariantAssigner, links: Sequence[int], names: Sequence[str]) -> VariantLinks:
        """InvalidArgumentError unless one count and one name per variant."""
    def of(self, recipient: int) -> int:
        """The number of links of recipient ``recipient``'s message (0 for a negative index)."""
    def variant(self, recipient: int) -> str | None:
        """The name of recipient ``recipient``'s variant (None for a negative index)."""

CLASSIFIER_HEADERS: tuple[str, ...]
#: The ``messages`` columns in the order :class:`MessageRows` writes them.
MESSAGE_COLUMNS: tuple[str, ...]
#: The column a variant campaign's rows end with.
VARIANT_COLUMN: str
"""Lowercase names of the headers the classifier reads; the edge stores these with each event."""

@final
class UserAgent:
    """What a user agent says about the client."""

    @property
    def browser(self) -> str | None:
        """Browser family ("Chrome", "Mobile Safari", "Instagram"…), or None."""
    @property
    def browser_version(self) -> str | None:
        """Browser major version, or None."""
    @property
    def os(self) -> str | None:
        """OS family ("Android", "iOS", "Windows"…), or None."""
    @property
    def os_version(self) -> str | None:
        """OS major version ("17", "10"; Windows by name: "7", "8.1", "XP"), or None."""
    @property
    def device(self) -> str:
        """One of "mobile", "tablet", "desktop", "bot", "other"."""

@final
class Classification:
    """The verdict on one request: its class, why, and what its user agent says."""

    @property
    def browser(self) -> str | None:
        """Browser family ("Chrome", "Mobile Safari", "Instagram"…), or None."""
    @property
    def browser_version(self) -> str | None:
        """Browser major version, or None."""
    @property
    def os(self) -> str | None:
        """OS family ("Android", "iOS", "Windows"…), or None."""
    @property
    def os_version(self) -> str | None:
        """OS major version ("17", "10"; Windows by name: "7", "8.1", "XP"), or None."""
    @property
    def device(self) -> str:
        """One of "mobile", "tablet", "desktop", "bot", "other"; "bot" when the user agent names a bot."""
    @property
    def label(self) -> str:
        """One of "human", "preview", "bot"."""
    @property
    def reason(self) -> str:
        """Why, e.g. "human", "preview:whatsapp", "bot:ua:python-requests", "bot:head", "bot:too-soon"."""

@final
class Classifier:
    """Classifies requests to short links. Immutable: build once, share across threads."""

    def __new__(cls, too_soon_seconds: float = 2.0) -> Classifier:
        """Requests sooner than ``too_soon_seconds`` after delivery are ``bot:too-soon`` (0 turns the rule
        off); InvalidArgumentError when it is negative, not finite or not a number."""
    @property
    def too_soon_seconds(self) -> float:
        """The threshold of the too-soon rule, in seconds."""
    def classify(
        self,
        ua: str | bytes | None,
        method: str | bytes | None = "GET",
        headers: Mapping[str | bytes, str | bytes] | Iterable[tuple[bytes | str, bytes | str]] | None = None,
        seconds_since_send: float | None = None,
        ip: str | bytes | None = None,
    ) -> Classification:
        """Classifies one request. ``headers`` is a mapping (any key case) or ASGI raw headers; when
        ``ua`` is None the User-Agent header is used. Bytes are decoded lossily. Never raises for odd
        content; InvalidArgumentError for arguments of the wrong type."""
    def edge_event(
        self,
        headers: Iterable[tuple[bytes | str, bytes | str]] | Mapping[str | bytes, str | bytes],
        method: str,
        outcome: str,
        event_id: str,
        time_ms: int,
        account: str,
        campaign_id: str,
        domain: str,
        token: bytes,
        recipient_index: int,
        link_index: int,
        ip: str,
        click_id: str,
        seconds_since_send: float | None,
    ) -> tuple[bytes, Literal["human", "preview", "bot"]]:
        """The edge's hot path in one call: classifies a request to a short link from its ASGI
        headers (the User-Agent header speaks for the user agent) and writes its event, the JSON
        object of format version 1 the stream carries. Returns the event and the class."""
    def classify_many(self, requests: Iterable[Mapping[str, object]]) -> list[Classification]:
        """Classifies a batch of requests given as mappings with the keys of :meth:`classify`
        (``ua``, ``method``, ``headers``, ``seconds_since_send``, ``ip``; all optional), in order,
        without holding the GIL while it works."""

def parse_user_agent(ua: str | bytes | None) -> UserAgent:
    """Browser, OS and device of a user agent; device "bot" when it names a bot or preview fetcher."""

@final
class FirstSeen:
    """The E.164 numbers of one recipient list seen so far, for finding duplicates (12 bytes a number)."""

    def __new__(cls) -> FirstSeen: ...
    def first_lines(self, numbers: list[str], lines: list[int]) -> list[int]:
        """For each ``(e164, line)``: 0 when new (it is recorded), else the line it was first seen on."""
    def __len__(self) -> int: ...

@final
class EventDecoder:
    """Checks, enriches and encodes the sink's batches of stream entries (see ``shortcore.sink``).
    Keeps the sequence rules' memory and a cache of parsed user agents between batches."""

    def __new__(
        cls,
        *,
        truncate_ip: bool = False,
        store_user_agent: bool = True,
        country_header: str | None = None,
        sibling_window_ms: int = 2000,
        sweep_recipients: int = 5,
        sweep_window_ms: int = 5000,
    ) -> EventDecoder: ...
    def decode(self, entries: Iterable[Sequence[Any]] | StreamEntries) -> EventBatch:
        """Checks stream entries: a :class:`StreamEntries`, or pairs ``(id, fields)`` with fields
        as a raw reply's flat list, a dict, the event bytes, or None. Runs without the GIL once
        the bytes are copied."""
    def replace(self, batch: EventBatch, position: int, raw: bytes) -> str | None:
        """Puts ``raw`` in place of the event at ``position``; returns the reason if ``raw`` is
        not an event (the batch is unchanged then)."""
    def encode(
        self, batch: EventBatch, links: Mapping[str, int | VariantLinks], countries: Mapping[str, str]
    ) -> EncodedRows:
        """Applies the sequence rules (``links``: a campaign's number of links, or its variants'),
        gives each event of a variant campaign's recipient its variant's name, and encodes the
        rows for ``INSERT INTO events FORMAT Native`` (``countries``: by client address)."""

@final
class StreamEntries:
    """The entries of one or more ``XREAD``/``XREADGROUP`` replies (RESP2), fed as raw bytes as
    they arrive; the ids and the ``e`` fields stay in Rust until looked at."""

    def __init__(self) -> None: ...
    def feed(self, data: bytes) -> bool:
        """Adds bytes of the reply being received; True once it is complete (its entries are
        added then). Raises ``ConnectionError`` for an error reply or bytes that are not RESP."""
    def abandon(self) -> None:
        """Drops the bytes of a reply that will not be completed (its connection broke)."""
    def __len__(self) -> int: ...
    def id(self, index: int) -> bytes:
        """The id of entry ``index`` (negative counts from the end)."""
    def __getitem__(self, index: int, /) -> tuple[bytes, list[bytes]]:
        """``(id, fields)`` as a raw reply has it: ``[b"e", event]``, or ``[]`` without one."""

@final
class EventBatch:
    """A checked batch: its events in stream order, addressed by position."""

    def __len__(self) -> int: ...
    @property
    def entries(self) -> list[int]:
        """For each event, the index of its entry in the decoded input."""
    @property
    def dead(self) -> list[tuple[int, str]]:
        """Refused entries: (index in the input, reason)."""
    def campaigns(self) -> list[str]:
        """Campaigns of the events (their links and variants go to :meth:`EventDecoder.encode`)."""
    def of_kind(self, kind: str) -> list[int]:
        """Positions of the events of type ``kind``."""
    def clicks(self, ids: list[str]) -> list[int]:
        """Positions of the clicks whose event id is in ``ids``."""
    def addresses_without_country(self) -> list[str]:
        """Client addresses of the events with no country yet."""
    def stream_id(self, position: int) -> bytes: ...
    def raw(self, position: int) -> bytes: ...
    def extra(self, position: int) -> dict[str, Any]:
        """What the sink added to the event (``_browser_version``, ``_os_version``, ``_country``,
        and ``_class``/``_reason``/``_revision`` once a sequence rule reclassified it)."""

@final
class EncodedRows:
    """Rows for ``INSERT INTO events (EVENT_COLUMNS) FORMAT Native``: the batch's events, then
    events of earlier batches a sequence rule reclassified."""

    def __len__(self) -> int: ...
    @property
    def body(self) -> bytes:
        """Every row as one Native block."""
    def native(self, start: int, end: int) -> bytes:
        """Rows ``start:end`` as one Native block."""
    @property
    def revisions(self) -> list[int]: ...
    @property
    def batch_len(self) -> int:
        """Rows of the batch itself."""
    def stream_id(self, row: int) -> bytes: ...
    def raw(self, row: int) -> bytes: ...
    def extra(self, row: int) -> dict[str, Any]:
        """What the sink added to row ``row`` (see :meth:`EventBatch.extra`); for the rows of
        earlier batches, the class and reason a sequence rule has given them since."""
