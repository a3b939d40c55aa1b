"""Campaign recipients from a CSV upload or a JSON list, streamed into a spool file.

Every row is accounted for: it is either accepted (phone normalised to E.164), or rejected with its
line number and reason — an invalid phone, a missing phone, or a duplicate of an earlier line (the
recipient is then sent once). Nothing is dropped silently, and nothing but the current chunk, one
batch awaiting normalisation and the set of phones already seen (12 bytes a number) is held in
memory, so a list of a million rows streams.

The per-row work is Rust's (:class:`shortcore._core.RecipientSpool`): the CSV is parsed, phones
normalised on every core and duplicates found without the GIL and without a Python object per row.

CSV: a header row with a ``phone`` column (any case), an optional ``id`` column, and any other
columns, which are kept as the recipient's custom fields (RFC 4180 quoting, LF or CRLF). JSON: a
list of phone strings or of objects with ``phone`` and optional ``id`` and custom fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Final

from shortcore._core import InvalidArgumentError
from shortcore._core import RecipientSpool as _Spool

MAX_COLUMNS: Final = 100
CHUNK_BYTES: Final = 1 << 20
RECORD_BATCH: Final = 20_000


class RecipientsError(ValueError):
    """The upload as a whole cannot be read (no header, no phone column, bad encoding…)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """An accepted recipient. ``line`` is the upload's line number (CSV) or 1-based position (JSON)."""

    line: int
    phone: str
    id: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that is not sent: its line, the phone as given, and why."""

    line: int
    value: str
    reason: str


class RecipientList:
    """One recipient list, read into a nameless temporary file in ``directory``.

    Read it with :meth:`read_csv` or :meth:`read_records` (once), then :meth:`batches` gives the
    accepted recipients back in order, or :class:`shortcore.campaigns.MessageBatches` renders them
    without leaving Rust. Raises ``InvalidArgumentError`` (a ``ValueError``) for an unknown region.
    """

    def __init__(
        self, default_region: str | None = None, directory: str | None = None, max_rejections: int = 10_000
    ) -> None:
        self.spool = _Spool(default_region, directory, max_rejections)

    def read_csv(self, source: IO[bytes], chunk_bytes: int = CHUNK_BYTES) -> None:
        """Reads a CSV file (header first) chunk by chunk. Raises RecipientsError for a file that
        cannot be read as a list."""
        spool = self.spool
        try:
            while chunk := source.read(chunk_bytes):
                spool.feed_csv(chunk)
            spool.finish_csv()
        except InvalidArgumentError as error:
            raise RecipientsError(str(error)) from None
        spool.finish()

    def read_records(self, records: Iterable[object]) -> None:
        """Reads a JSON list: phone strings, or objects with ``phone`` and optional ``id``."""
        spool = self.spool
        rows: list[tuple[int, str, str | None, list[tuple[str, str]]]] = []
        for index, record in enumerate(records, start=1):
            row = _record_row(index, record)
            if isinstance(row, Rejection):
                spool.reject(row.line, row.value, row.reason)
                continue
            rows.append(row)
            if len(rows) >= RECORD_BATCH:
                spool.add(rows)
                rows = []
        spool.add(rows)
        spool.finish()

    @property
    def recipients(self) -> int:
        return self.spool.recipients

    @property
    def rows_read(self) -> int:
        return self.spool.rows_read

    @property
    def invalid_count(self) -> int:
        return self.spool.invalid_count

    @property
    def duplicate_count(self) -> int:
        return self.spool.duplicate_count

    def invalid(self) -> list[Rejection]:
        """The first rows refused (up to ``max_rejections``), in line order."""
        return [Rejection(*row) for row in self.spool.invalid()]

    def duplicates(self) -> list[Rejection]:
        """The first duplicate rows (up to ``max_rejections``), in line order."""
        return [Rejection(*row) for row in self.spool.duplicates()]

    def batches(self, size: int) -> Iterator[list[Recipient]]:
        """The accepted recipients in order, ``size`` at a time (each list is read only once)."""
        while rows := self.spool.read(size):
            yield [Recipient(line, phone, rid, dict(fields)) for line, phone, rid, fields in rows]


def _record_row(index: int, record: object) -> tuple[int, str, str | None, list[tuple[str, str]]] | Rejection:
    if isinstance(record, str):
        return (index, record, None, [])
    if not isinstance(record, Mapping):
        return Rejection(index, str(record)[:40], "must be a phone string or an object with 'phone'")
    phone = record.get("phone")
    if not isinstance(phone, str):
        return Rejection(index, str(phone)[:40], "'phone' must be a string")
    raw_id = record.get("id")
    if raw_id is not None and not isinstance(raw_id, str | int):
        return Rejection(index, phone[:40], "'id' must be a string or an integer")
    fields = {k: v for k, v in record.items() if k not in ("phone", "id")}
    if len(fields) > MAX_COLUMNS or not all(isinstance(v, str | int | float | bool) for v in fields.values()):
        return Rejection(index, phone[:40], "custom fields must be at most 100 strings or numbers")
    return (index, phone, None if raw_id is None else str(raw_id), [(str(k), str(v)) for k, v in fields.items()])
