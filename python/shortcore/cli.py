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
    parser.add_subparsers(title="commands", metavar="COMMAND")
    return parser


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
