"""The ``shortcore`` command line. Each subcommand is a small function; the work lives in the
modules it calls."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

Handler = Callable[[argparse.Namespace], int]
OnReady = Callable[[str, str], None]


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

    campaign = commands.add_parser("campaign", help="create campaigns through a running server")
    campaign_commands = campaign.add_subparsers(title="campaign commands", metavar="COMMAND")
    campaign.set_defaults(handler=lambda _: _usage(campaign))
    create = campaign_commands.add_parser(
        "create",
        help="create a campaign from a message text and a CSV of recipients",
        description="Uploads FILE.csv (a header row with a 'phone' column, optional 'id' and custom columns) "
        "to the control API of a running `shortcore serve`, creates the campaign and, with --out, writes "
        "one JSON line per recipient: phone, personalised text, encoding, segments and short links. "
        "For an A/B test, give two or more --variant instead of --text: each recipient gets one variant, "
        "drawn by weight (default 1); the first is the control.",
    )
    create.add_argument("--text", help="the message text, with the links to shorten")
    create.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[:WEIGHT]=TEXT",
        help="an A/B variant instead of --text (repeat, 2 to 26; the first is the control), e.g. B:2='20%% off: URL'",
    )
    create.add_argument("--recipients", required=True, type=Path, metavar="FILE.csv", help="the recipients")
    create.add_argument("--out", type=Path, metavar="FILE.jsonl", help="write the personalised messages here")
    create.add_argument("--name", default="", help="the campaign's name")
    create.add_argument("--domain", help="one of the account's short domains (default: the account's default)")
    create.add_argument("--scheme", choices=["keep", "drop", "fit"], default="keep", help="how short links are written")
    create.add_argument("--only-last", action="store_true", help="shorten only the last link")
    create.add_argument("--utm", action="store_true", help="add utm_source=shortcore, utm_medium=sms, utm_campaign")
    create.add_argument("--default-region", help="region for national numbers, e.g. DE")
    create.add_argument(
        "--api-url",
        default=os.environ.get("SHORTCORE_API_URL", "http://127.0.0.1:8001"),
        help="the control API of a running server (default $SHORTCORE_API_URL or %(default)s)",
    )
    create.add_argument("--api-key", default=os.environ.get("SHORTCORE_API_KEY"), help="default $SHORTCORE_API_KEY")
    create.set_defaults(handler=_campaign_create)

    classify = commands.add_parser(
        "classify",
        help="classify requests given as JSON lines: human, preview or bot",
        description='Reads JSON lines {"ua": ..., "headers": {...}, "method": ..., "seconds_since_send": ...} '
        '(only "ua" required) from FILE or stdin and writes one JSON line {"class", "reason", "browser", "os", '
        '"device"} per input line, in order. A line that cannot be read gets {"error": ...}.',
    )
    classify.add_argument("file", nargs="?", default="-", metavar="FILE", help="JSON lines to read; - for stdin")
    classify.add_argument(
        "--too-soon",
        type=float,
        default=None,
        metavar="SECONDS",
        help="requests sooner than this after delivery are bots (default 2)",
    )
    classify.set_defaults(handler=_classify)

    serve = commands.add_parser(
        "serve",
        help="run the edge (short links, pixel, healthz, metrics) and the control API on embedded stores",
        description="Runs shortcore. With no SHORTCORE_REDIS_URL it starts a Valkey/Redis server of its own "
        "(files in the data directory, AOF on) and stops it on exit. Each flag overrides its SHORTCORE_* variable.",
    )
    _add_serve_arguments(serve)
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo",
        help="start like serve, create a demo account and campaign, print its API key and links",
        description="Starts shortcore like `serve` (embedded stores unless URLs are given), creates a demo "
        "account and a three-recipient campaign, and prints the API key, the personalised messages and "
        "clickable short links (on the local edge unless --base-url is given).",
    )
    _add_serve_arguments(demo)
    demo.set_defaults(handler=_demo)
    stats = commands.add_parser(
        "stats",
        help="a campaign's figures: clicks, unique clickers, CTR, views, bots, conversions, per link and hour",
        description="With an API key, asks the running server (GET /api/v1/campaigns/ID/stats). Without one, "
        "opens the analytics store itself, which works only while no server holds an embedded (chDB) store.",
    )
    stats.add_argument("campaign_id", metavar="CAMPAIGN_ID")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    _api_options(stats, "SHORTCORE_API_KEY", "--api-key")
    _store_options(stats)
    stats.set_defaults(handler=_stats)

    sql = commands.add_parser(
        "sql",
        help="run a read-only SQL query on the analytics store",
        description="Runs QUERY read-only (ClickHouse readonly=1: no writes, no settings, no file or URL "
        "functions). With an admin key (the server's SHORTCORE_ADMIN_KEY), through the running server; "
        "without one, on the store directly, which works only while no server holds an embedded store.",
    )
    sql.add_argument("query", metavar="QUERY", help='e.g. "SELECT class, count() FROM shortcore.events GROUP BY class"')
    sql.add_argument("--format", choices=["table", "csv", "jsonl"], default="table", help="output (default table)")
    _api_options(sql, "SHORTCORE_ADMIN_KEY", "--admin-key")
    _store_options(sql)
    sql.set_defaults(handler=_sql)
    return parser


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="where the embedded stores keep their files (default ./.shortcore)")
    parser.add_argument("--redis-url", help="redis://, rediss://, unix:// or redis+cluster:// URL; unset = embedded")
    parser.add_argument("--clickhouse-url", help="chdb:///path or http(s)://user:pass@host:8123/db")
    parser.add_argument("--secret", help="the key behind tokens (default: generated once, kept in the data dir)")
    parser.add_argument("--base-url", help="the default short domain, e.g. https://ul.example")
    parser.add_argument("--trusted-proxy-header", help="header your proxy sets with the client address")
    parser.add_argument("--unknown-token-limit", type=int, help="unknown tokens a client may try per minute (0: off)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="edge worker processes (default %(default)s)")
    parser.add_argument("--control-port", type=int, help="port of the control API (default: --port + 1)")
    parser.add_argument(
        "--server", choices=["uvicorn", "granian"], default="uvicorn", help="ASGI server (default %(default)s)"
    )


def _api_options(parser: argparse.ArgumentParser, key_env: str, key_flag: str) -> None:
    parser.add_argument(
        "--api-url",
        default=os.environ.get("SHORTCORE_API_URL", "http://127.0.0.1:8001"),
        help="the control API of a running server (default $SHORTCORE_API_URL or %(default)s)",
    )
    parser.add_argument(key_flag, dest="key", default=os.environ.get(key_env), help=f"default ${key_env}")


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="without a key: the data directory (default $SHORTCORE_DATA_DIR)")
    parser.add_argument("--clickhouse-url", help="without a key: chdb:///path or http(s)://… of the store")


def _open_store(args: argparse.Namespace, command: str, readonly: bool) -> Any:
    from shortcore.config import Settings
    from shortcore.stats import readonly_client

    settings = Settings.from_env(data_dir=args.data_dir, clickhouse_url=args.clickhouse_url)
    url = settings.effective_clickhouse_url
    if url.startswith("chdb://") and not os.path.isdir(url[len("chdb://") :]):
        raise _CliError(f"no analytics store at {url}; give a key to go through a running server")
    from shortcore.analytics import connect, display_url

    # Our message below says it all; the client's own warning would repeat it as a log line.
    logging.getLogger("clickhouse_connect").setLevel(logging.ERROR)
    try:
        if readonly:
            return readonly_client(url)
        return connect(url)
    except Exception as error:
        reason = str(error).splitlines()[0][:200]
        if not url.startswith("chdb://"):
            raise _CliError(f"cannot open {display_url(url)} ({reason}); is the ClickHouse server up?") from None
        raise _CliError(
            f"cannot open {url} ({reason}); while `shortcore serve` holds an embedded "
            f"store, go through it: shortcore {command} … with {'--admin-key' if readonly else '--api-key'}"
        ) from None


class _CliError(Exception):
    pass


def _stats(args: argparse.Namespace) -> int:
    import orjson
    from clickhouse_connect.driver.exceptions import OperationalError

    from shortcore.client import Api, ClientError, campaign_stats
    from shortcore.stats import CampaignNotFound, stats_lines
    from shortcore.stats import campaign_stats as query_stats

    try:
        if args.key:
            stats = campaign_stats(Api(args.api_url, args.key), args.campaign_id)
        else:
            client = _open_store(args, "stats", readonly=True)
            try:
                stats = query_stats(client, args.campaign_id)
            finally:
                client.close()
    except (ClientError, _CliError) as error:
        print(f"shortcore stats: {error}", file=sys.stderr)
        return 1
    except CampaignNotFound:
        print(f"shortcore stats: no campaign {args.campaign_id}", file=sys.stderr)
        return 1
    except OperationalError as error:  # the server went out of reach after the store was opened
        print(f"shortcore stats: {_unreachable(error)}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())
    else:
        sys.stdout.write(stats_lines(stats))
    return 0


def _unreachable(error: Exception) -> str:
    return f"the analytics store is unreachable ({str(error).splitlines()[0][:200]})"


def _sql(args: argparse.Namespace) -> int:
    from clickhouse_connect.driver.exceptions import OperationalError

    from shortcore.client import Api, ClientError, sql
    from shortcore.stats import SqlError, format_rows, run_sql

    try:
        if args.key:
            text = sql(Api(args.api_url, args.key), args.query, args.format)
        else:
            client = _open_store(args, "sql", readonly=True)
            try:
                columns, rows = run_sql(client, args.query)
            finally:
                client.close()
            text = format_rows(columns, rows, args.format)
    except (ClientError, _CliError, SqlError) as error:
        print(f"shortcore sql: {error}", file=sys.stderr)
        return 1
    except OperationalError as error:  # the server went out of reach after the store was opened
        print(f"shortcore sql: {_unreachable(error)}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = None
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _campaign_create(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from shortcore.client import Api, ClientError, create_campaign, dumps, summary_lines

    if not args.api_key:
        print("shortcore campaign create: give --api-key or set SHORTCORE_API_KEY", file=sys.stderr)
        return 2
    if not args.recipients.is_file():
        print(f"shortcore campaign create: no such file: {args.recipients}", file=sys.stderr)
        return 2
    if (args.text is None) == (not args.variant):
        print("shortcore campaign create: give --text, or two or more --variant", file=sys.stderr)
        return 2
    try:
        variants = [_variant_option(value) for value in args.variant]
    except ValueError as error:
        print(f"shortcore campaign create: {error}", file=sys.stderr)
        return 2
    fields = {"name": args.name, "scheme": args.scheme}
    fields |= {"text": args.text} if args.text is not None else {"variants": dumps(variants)}
    fields |= {"only_last": "true"} if args.only_last else {}
    fields |= {"utm": "true"} if args.utm else {}
    fields |= {"domain": args.domain} if args.domain else {}
    fields |= {"default_region": args.default_region} if args.default_region else {}
    size = args.recipients.stat().st_size
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        DownloadColumn(),
        MofNCompleteColumn(),
    )
    try:
        with (
            Progress(*columns, transient=True, console=Console(stderr=True)) as bar,
            args.out.open("wb") if args.out else open(os.devnull, "wb") as out,
        ):
            upload = bar.add_task("upload", total=size)
            messages = bar.add_task("messages", total=None, visible=bool(args.out))
            created = create_campaign(
                Api(args.api_url, args.api_key),
                args.recipients,
                fields,
                out if args.out else None,
                lambda n: bar.advance(upload, n),
                lambda n: bar.advance(messages, n),
            )
    except ClientError as error:
        print(f"shortcore campaign create: {error}", file=sys.stderr)
        return 1
    for line in summary_lines(created):
        print(line)
    if args.out:
        print(f"messages    {args.out}")
    return 0


def _variant_option(value: str) -> dict[str, Any]:
    """``NAME[:WEIGHT]=TEXT`` → ``{"name", "weight", "text"}``; the server checks the rest."""
    head, sep, text = value.partition("=")
    name, colon, weight = head.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--variant {value[:40]!r} must be NAME=TEXT or NAME:WEIGHT=TEXT")
    variant: dict[str, Any] = {"name": name.strip(), "text": text}
    if colon:
        try:
            variant["weight"] = float(weight)
        except ValueError:
            raise ValueError(f"--variant {name.strip()}: the weight {weight!r} is not a number") from None
    return variant


def _demo(args: argparse.Namespace) -> int:
    from shortcore.demo import announce

    if not args.base_url and not os.environ.get("SHORTCORE_BASE_URL"):
        args.base_url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '') else args.host}:{args.port}"
    return _serve(args, on_ready=announce)


def _serve(args: argparse.Namespace, on_ready: OnReady | None = None) -> int:
    from shortcore.config import ConfigError
    from shortcore.serve import serve

    try:
        return serve(
            host=args.host,
            port=args.port,
            workers=args.workers,
            server=args.server,
            control_port=args.control_port,
            on_ready=on_ready,
            data_dir=args.data_dir,
            redis_url=args.redis_url,
            clickhouse_url=args.clickhouse_url,
            secret=args.secret,
            base_url=args.base_url,
            trusted_proxy_header=args.trusted_proxy_header,
            unknown_token_limit=args.unknown_token_limit,
        )
    except ConfigError as error:
        print(f"shortcore serve: {error}", file=sys.stderr)
        return 2


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


def _classify(args: argparse.Namespace) -> int:
    from shortcore import InvalidArgumentError
    from shortcore.classify import Classifier, classify_jsonl

    try:
        classifier = Classifier() if args.too_soon is None else Classifier(args.too_soon)
        source: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except InvalidArgumentError as error:
        print(f"shortcore classify: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"shortcore classify: {error.strerror}: {args.file}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    try:
        with source:
            # One line at a time when a person types them, in chunks otherwise.
            for chunk in classify_jsonl(classifier, source, chunk=1 if source.isatty() else 4096):
                out.write(chunk)
                out.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        sys.stdout = None
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as error:
        print(f"shortcore classify: {error}", file=sys.stderr)
        return 1
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
