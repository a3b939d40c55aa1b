"""The ``shortcore`` command line. Each subcommand is a small function; the work lives in the
modules it calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shortcore", description="Self-hosted SMS link-tracking engine.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.set_defaults(handler=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    sms = commands.add_parser(
        "sms",
        help="show a message's links, encoding, length and segments, before and after shortening",
        description="Shows the links shortcore finds in TEXT and what the message costs as an SMS, "
        "before and after its links are shortened on BASE_URL.",
    )
    sms.add_argument("text", help="the message text")
    sms.add_argument("--base-url", default="https://ul.example", help="the short domain (default %(default)s)")
    sms.add_argument("--scheme", choices=["keep", "drop", "fit"], default="keep", help="how short links are written")
    sms.add_argument("--only-last", action="store_true", help="shorten only the last link")
    sms.add_argument("--token-length", type=int, default=7, help="characters in a token (6 to 12)")
    sms.set_defaults(handler=_sms)
    return parser


def _sms(args: argparse.Namespace) -> int:
    from shortcore import InvalidArgumentError
    from shortcore.links import MessageTemplate
    from shortcore.sms import MessageSize
    from shortcore.tokens import TokenCodec

    try:
        template = MessageTemplate(args.text, scheme=args.scheme, only_last=args.only_last)
        # An example token of the right length: the message's cost does not depend on which.
        codec = TokenCodec(b"example", args.token_length)
    except InvalidArgumentError as error:
        print(f"shortcore sms: {error}", file=sys.stderr)
        return 2
    base = args.base_url.rstrip("/")
    tokens = codec.encode_range(0, len(template.destinations))
    message = template.render([f"{base}/{token}" for token in tokens])

    def describe(size: MessageSize) -> str:
        return f"{size.encoding}, {size.characters} characters, {size.units} units, {size.segments} segment(s)"

    for start, end, link in template.links:
        print(f"link [{start}:{end}] {link}")
    print(f"before: {describe(message.before)}")
    print(f"after:  {describe(message.after)}")
    print(message.text)
    return 0


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
