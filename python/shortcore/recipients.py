"""Campaign recipients from a CSV upload or a JSON list, streamed in batches.

Every row is accounted for: it is either accepted (phone normalised to E.164), or rejected with its
line number and reason — an invalid phone, a missing phone, or a duplicate of an earlier line (the
recipient is then sent once). Nothing is dropped silently, and nothing but the current batch and the
set of phones already seen is held in memory, so a list of a million rows streams.

CSV: a header row with a ``phone`` column (any case), an optional ``id`` column, and any other
columns, which are kept as the recipient's custom fields. JSON: a list of phone strings or of
objects with ``phone`` and optional ``id`` and custom fields.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from shortcore.phones import PhoneNormalizer

DEFAULT_BATCH_SIZE = 20_000
MAX_COLUMNS = 100
MAX_FIELD_CHARACTERS = 1_000


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


@dataclass(slots=True)
class RecipientBatch:
    accepted: list[Recipient] = field(default_factory=list)
    invalid: list[Rejection] = field(default_factory=list)
    duplicates: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class _Row:
    line: int
    phone: str
    id: str | None
    fields: dict[str, str]


class RecipientReader:
    """Reads recipients in batches, normalising phones in Rust a batch at a time.

    One reader reads one list: it remembers the phones it has accepted, to report duplicates.
    """

    def __init__(self, normalizer: PhoneNormalizer, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._normalizer = normalizer
        self._batch_size = batch_size
        # E.164 numbers as ints (at most 15 digits) cost a third of their strings' memory.
        self._seen: dict[int, int] = {}

    @property
    def accepted_count(self) -> int:
        return len(self._seen)

    def read_csv(self, lines: Iterable[str]) -> Iterator[RecipientBatch]:
        """Batches from CSV text lines (header first). Raises RecipientsError for an unreadable file."""
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as error:
            raise RecipientsError(f"line 1: {error}") from None
        except UnicodeDecodeError:
            raise RecipientsError("line 1: the file is not UTF-8 text") from None
        if not header or not any(name.strip() for name in header):
            raise RecipientsError("the CSV file is empty; it needs a header row with a 'phone' column")
        names = [name.strip().lstrip("\ufeff").lower() for name in header]
        if len(names) > MAX_COLUMNS:
            raise RecipientsError(f"the CSV file has {len(names)} columns; at most {MAX_COLUMNS} are allowed")
        if "phone" not in names:
            raise RecipientsError(f"the CSV header has no 'phone' column (columns: {', '.join(names)[:200]})")
        if len(set(names)) != len(names):
            raise RecipientsError("the CSV header names a column twice")
        phone_at = names.index("phone")
        id_at = names.index("id") if "id" in names else None
        custom = [(i, name) for i, name in enumerate(names) if i not in (phone_at, id_at)]

        def rows() -> Iterator[_Row | Rejection]:
            while True:
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise RecipientsError(f"line {reader.line_num}: {error}") from None
                except UnicodeDecodeError:
                    raise RecipientsError(f"after line {reader.line_num}: the file is not UTF-8 text") from None
                line = reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue  # blank lines are not rows
                if len(values) != len(names):
                    yield Rejection(line, _cell(values, phone_at), f"has {len(values)} fields, header has {len(names)}")
                    continue
                if any(len(v) > MAX_FIELD_CHARACTERS for v in values):
                    yield Rejection(line, values[phone_at][:40], f"a field is over {MAX_FIELD_CHARACTERS} characters")
                    continue
                recipient_id = values[id_at].strip() or None if id_at is not None else None
                yield _Row(line, values[phone_at], recipient_id, {name: values[i] for i, name in custom})

        return self._batches(rows())

    def read_records(self, records: Iterable[object]) -> Iterator[RecipientBatch]:
        """Batches from a JSON list: phone strings, or objects with ``phone`` and optional ``id``."""

        def rows() -> Iterator[_Row | Rejection]:
            for index, record in enumerate(records, start=1):
                if isinstance(record, str):
                    yield _Row(index, record, None, {})
                    continue
                if not isinstance(record, Mapping):
                    yield Rejection(index, str(record)[:40], "must be a phone string or an object with 'phone'")
                    continue
                phone = record.get("phone")
                if not isinstance(phone, str):
                    yield Rejection(index, str(phone)[:40], "'phone' must be a string")
                    continue
                raw_id = record.get("id")
                if raw_id is not None and not isinstance(raw_id, str | int):
                    yield Rejection(index, phone[:40], "'id' must be a string or an integer")
                    continue
                fields = {k: v for k, v in record.items() if k not in ("phone", "id")}
                if len(fields) > MAX_COLUMNS or not all(
                    isinstance(v, str | int | float | bool) for v in fields.values()
                ):
                    yield Rejection(index, phone[:40], "custom fields must be at most 100 strings or numbers")
                    continue
                yield _Row(
                    index, phone, None if raw_id is None else str(raw_id), {str(k): str(v) for k, v in fields.items()}
                )

        return self._batches(rows())

    def _batches(self, rows: Iterator[_Row | Rejection]) -> Iterator[RecipientBatch]:
        pending: list[_Row] = []
        batch = RecipientBatch()
        for row in rows:
            if isinstance(row, Rejection):
                batch.invalid.append(row)
                continue
            pending.append(row)
            if len(pending) >= self._batch_size:
                self._settle(pending, batch)
                yield batch
                pending, batch = [], RecipientBatch()
        self._settle(pending, batch)
        if batch.accepted or batch.invalid or batch.duplicates:
            yield batch

    def _settle(self, rows: list[_Row], batch: RecipientBatch) -> None:
        """Normalises a batch's phones in one Rust call and sorts each row into the batch."""
        results = self._normalizer.normalize_many([row.phone for row in rows])
        for row, (phone, reason) in zip(rows, results, strict=True):
            if phone is None:
                batch.invalid.append(Rejection(row.line, row.phone[:40], reason or "invalid"))
                continue
            key = int(phone[1:])
            first = self._seen.setdefault(key, row.line)
            if first != row.line:
                batch.duplicates.append(Rejection(row.line, row.phone[:40], f"duplicate of line {first}"))
                continue
            batch.accepted.append(Recipient(row.line, phone, row.id, row.fields))
        # Rows refused for their shape were noted as they came; report in line order.
        batch.invalid.sort(key=lambda rejection: rejection.line)


def _cell(values: list[str], index: int) -> str:
    return values[index][:40] if index < len(values) else ""
