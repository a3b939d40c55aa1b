"""Request classification: a person's click, a link preview (a "view"), or a bot.

The work happens in the Rust core; ``rust/shortcore/src/classify.rs`` lists the rules in order
and ``DESIGN.md`` describes the pipeline. Build one :class:`Classifier` and share it: it is
immutable, and ``classify_many`` releases the GIL while it works.

>>> clf = Classifier()
>>> clf.classify("WhatsApp/2.23.20.0 A").reason
'preview:whatsapp'
>>> clf.classify("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36", method="HEAD").reason
'bot:head'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import orjson

from shortcore._core import (
    CLASSIFIER_HEADERS,
    Classification,
    Classifier,
    InvalidArgumentError,
    UserAgent,
    parse_user_agent,
)

# Must match `Classifier::DEFAULT_TOO_SOON_SECONDS` in rust/shortcore/src/classify.rs.
DEFAULT_TOO_SOON_SECONDS = 2.0

# The keys of a JSON-lines request besides "ua"; the names of `Classifier.classify`'s arguments.
_REQUEST_KEYS = ("method", "headers", "seconds_since_send", "ip")

__all__ = [
    "CLASSIFIER_HEADERS",
    "DEFAULT_TOO_SOON_SECONDS",
    "Classification",
    "Classifier",
    "UserAgent",
    "classify_jsonl",
    "parse_user_agent",
]


def classify_jsonl(classifier: Classifier, lines: Iterable[bytes], chunk: int = 4096) -> Iterator[bytes]:
    """Classifies JSON lines ``{"ua": …, "headers": {…}, "method": …, "seconds_since_send": …}``
    (only ``ua`` required), yielding the output of ``chunk`` lines at a time: one JSON line
    ``{"class", "reason", "browser", "os", "device"}`` per input line, in order, or
    ``{"error": …}`` for a line that cannot be read. Never raises for bad input."""
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= chunk:
            yield b"".join(_classify_lines(classifier, batch))
            batch = []
    if batch:
        yield b"".join(_classify_lines(classifier, batch))


def _classify_lines(classifier: Classifier, lines: Sequence[bytes]) -> list[bytes]:
    out: list[bytes] = [b""] * len(lines)
    requests: list[dict[str, object]] = []
    where: list[int] = []
    for i, line in enumerate(lines):
        request = _request(line)
        if isinstance(request, str):
            out[i] = _error(request)
        else:
            requests.append(request)
            where.append(i)
    results: list[Classification | str]
    try:
        results = list(classifier.classify_many(requests))
    except InvalidArgumentError:
        # A value of the wrong type somewhere in the chunk: find it one request at a time.
        results = []
        for request in requests:
            try:
                results.extend(classifier.classify_many([request]))
            except InvalidArgumentError as error:
                results.append(str(error))
    for i, result in zip(where, results, strict=True):
        if isinstance(result, str):
            out[i] = _error(result)
        else:
            record = {
                "class": result.label,
                "reason": result.reason,
                "browser": result.browser,
                "os": result.os,
                "device": result.device,
            }
            out[i] = orjson.dumps(record) + b"\n"
    return out


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message}) + b"\n"


def _request(line: bytes) -> dict[str, object] | str:
    """The request of one input line, or why there is none."""
    text = line.decode("utf-8", "replace").strip()
    if not text:
        return "empty line"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return f"not JSON: {error}"
    if not isinstance(value, dict):
        return f"expected a JSON object, not {type(value).__name__}"
    if "ua" not in value:
        return 'missing "ua"'
    request: dict[str, object] = {"ua": value["ua"]}
    for key in _REQUEST_KEYS:
        if key in value:
            request[key] = value[key]
    return request
