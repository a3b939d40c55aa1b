"""The ``shortcore`` command line. Each subcommand is a small function; the work lives in the
modules it calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shortcore", description="Self-hosted SMS link-tracking engine.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    classify = commands.add_parser(
        "classify",
        help="classify requests given as JSON lines (human, preview or bot)",
        description=(
            'Reads JSON lines {"ua": ..., "headers": {...}, "method": ..., "seconds_since_send": ...} '
            '(only "ua" required) and writes one JSON line {"class", "reason", "browser", "os", "device"} '
            'per input line, in order. A line that cannot be read gets {"error": ...}.'
        ),
    )
    classify.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="JSON lines to read; - or none for stdin"
    )
    classify.add_argument(
        "--too-soon",
        type=float,
        default=None,
        metavar="SECONDS",
        help="requests sooner than this after delivery are bots (default 2)",
    )
    classify.set_defaults(handler=classify_command)
    return parser


# Lines classified per call into the core: large enough to amortise the call, small enough to
# keep memory flat and output flowing.
CLASSIFY_CHUNK = 4096


def classify_command(args: argparse.Namespace) -> int:
    from shortcore.classify import Classifier

    try:
        classifier = Classifier() if args.too_soon is None else Classifier(args.too_soon)
    except ValueError as err:
        print(f"shortcore classify: {err}", file=sys.stderr)
        return 2
    try:
        source: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as err:
        print(f"shortcore classify: {err.strerror}: {args.file}", file=sys.stderr)
        return 1
    chunk = 1 if source.isatty() else CLASSIFY_CHUNK
    out = sys.stdout.buffer
    try:
        with source:
            for lines in _chunks(source, chunk):
                out.write(b"".join(classify_lines(classifier, lines)))
                out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        sys.stdout = None
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        print(f"shortcore classify: {err}", file=sys.stderr)
        return 1
    return 0


def _chunks(source: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    lines: list[bytes] = []
    for line in source:
        lines.append(line)
        if len(lines) >= size:
            yield lines
            lines = []
    if lines:
        yield lines


def classify_lines(classifier: Any, lines: Sequence[bytes]) -> list[bytes]:
    """One output line (with its newline) per input line, in order."""
    import orjson

    from shortcore import InvalidArgumentError

    out: list[bytes | None] = [None] * len(lines)
    requests: list[dict[str, object]] = []
    where: list[int] = []
    for i, line in enumerate(lines):
        request = _request(line)
        if isinstance(request, str):
            out[i] = orjson.dumps({"error": request}) + b"\n"
        else:
            requests.append(request)
            where.append(i)
    try:
        results = classifier.classify_many(requests)
    except InvalidArgumentError:
        # A value of the wrong type somewhere in the chunk: find it one request at a time.
        results = []
        for request in requests:
            try:
                results.append(classifier.classify_many([request])[0])
            except InvalidArgumentError as err:
                results.append(str(err))
    for i, result in zip(where, results, strict=True):
        if isinstance(result, str):
            out[i] = orjson.dumps({"error": result}) + b"\n"
        else:
            record = {
                "class": result.label,
                "reason": result.reason,
                "browser": result.browser,
                "os": result.os,
                "device": result.device,
            }
            out[i] = orjson.dumps(record) + b"\n"
    return [line for line in out if line is not None]


def _request(line: bytes) -> dict[str, object] | str:
    """The request of one input line, or why there is none."""
    import orjson

    text = line.decode("utf-8", "replace").strip()
    if not text:
        return "empty line"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        return f"not JSON: {err}"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    if "ua" not in value:
        return 'missing "ua"'
    request: dict[str, object] = {"ua": value["ua"]}
    for key in ("method", "headers", "seconds_since_send", "ip"):
        if key in value:
            request[key] = value[key]
    return request


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from shortcore import __version__

        print(__version__)
        return 0
    handler: Handler | None = args.handler
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
