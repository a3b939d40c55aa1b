"""The figures people read: a campaign's stats, its recorded requests, and read-only SQL.

Plain functions of a clickhouse-connect client, shared by the control API (through
:class:`~shortcore.analytics.AnalyticsStore`) and the CLI (which opens the store itself when no
server holds it). Every figure reads ``events FINAL``, so a replayed or reclassified event
counts once, before background merges as after them.

Definitions (``docs/analytics.md`` has them with the queries):

* a **human click** is a ``human`` request on one of the campaign's tokens;
* **unique clickers** are the recipients with at least one human click;
* **click-through rate** is unique clickers over messages;
* **views** are the recipients whose message was fetched by a link-preview service (a message
  counts as viewed once); a recipient who was viewed and then clicked (a human request on the
  same link after the preview) is **clicked after view**, one who was viewed only is
  **viewed, not clicked**;
* **bot hits** are ``bot`` requests, by reason (the edge's or a sequence rule's);
* **conversions** are conversion events credited to the campaign's clicks, one per order id;
  **view-through conversions** (credited to a delivered message nobody clicked) are counted apart;
  the **conversion rate** is conversions over unique clickers, for the campaign and per link.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import ipaddress
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final, Literal, overload

import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from shortcore.analytics import DATABASE, connect
from shortcore.significance import comparison_cells, verdict

CLICKS_PAGE: Final = 50_000
SQL_MAX_ROWS: Final = 100_000

#: Columns of ``/clicks`` (JSON lines keys, CSV header), in order.
CLICK_FIELDS: Final = (
    "time", "event_id", "type", "phone", "recipient_id", "recipient_index", "link_index", "destination", "variant",
    "class", "reason", "ip", "browser", "os", "device", "country", "user_agent", "method", "click_id", "event_name",
    "value", "currency", "order_id",
)  # fmt: skip


class CampaignNotFound(LookupError):
    """No campaign with that id in the analytics store."""


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def campaign_stats(client: Client, campaign_id: str) -> dict[str, Any]:
    """The cumulative figures of one campaign."""
    params = {"c": campaign_id}
    found = client.query(
        f"SELECT name, recipients, links, destinations, sent_at, variants FROM {DATABASE}.campaigns FINAL "
        "WHERE id = %(c)s",
        parameters=params,
    ).result_rows
    if not found:
        raise CampaignNotFound(campaign_id)
    name, recipients, _, destinations, sent_at, variants_json = found[0]
    plan = orjson.loads(variants_json) if variants_json else None
    slot_destinations = _slot_destinations(plan) if plan else {i: {} for i in range(len(destinations))}
    # With variants, counted per variant in the one pass over the messages the total needs anyway.
    sent = _sent_per_variant(client, campaign_id) if plan else None
    messages = (
        sum(sent.values())
        if sent is not None
        else client.query(
            f"SELECT count() FROM {DATABASE}.messages FINAL WHERE campaign_id = %(c)s", parameters=params
        ).result_rows[0][0]
    )

    events = f"{DATABASE}.events FINAL WHERE campaign_id = %(c)s"
    totals = client.query(
        f"""
        SELECT
            countIf(class = 'human') AS human_clicks,
            uniqExactIf(recipient_index, class = 'human') AS unique_clickers,
            countIf(class = 'preview') AS preview_hits,
            uniqExactIf(recipient_index, class = 'preview') AS views,
            countIf(class = 'bot') AS bot_hits,
            countIf(class = 'bot' AND reason != edge_reason) AS reclassified,
            min(time) AS first_event,
            max(time) AS last_event
        FROM {events} AND type = 'click' AND recipient_index >= 0
        """,
        parameters=params,
    ).named_results()
    total = next(totals)
    # Per recipient: viewed (a preview on any link) and then either never clicked, or clicked a
    # link after its preview (the view upgraded to a click).
    funnel = client.query(
        f"""
        SELECT countIf(clicks = 0) AS viewed_not_clicked, countIf(upgraded) AS clicked_after_view
        FROM (
            SELECT recipient_index, sum(humans) AS clicks, max(previews > 0) AS viewed,
                max(humans > 0 AND previews > 0 AND last_click >= first_view) AS upgraded
            FROM (
                SELECT recipient_index, link_index, countIf(class = 'preview') AS previews,
                    countIf(class = 'human') AS humans, minIf(time, class = 'preview') AS first_view,
                    maxIf(time, class = 'human') AS last_click
                FROM {events} AND type = 'click' AND recipient_index >= 0
                GROUP BY recipient_index, link_index
            )
            GROUP BY recipient_index
            HAVING viewed
        )
        """,
        parameters=params,
    ).result_rows[0]
    # Conversions credited through a click, and view-through ones (credited to a message that
    # was delivered but not clicked) apart; one per order id.
    converted = client.query(
        f"""
        SELECT link_index, view_through, count(), sum(value) FROM (
            SELECT any(link_index) AS link_index, any(outcome = 'view') AS view_through, any(value) AS value
            FROM {events} AND type = 'conversion'
            GROUP BY if(order_id != '', order_id, toString(event_id))
        )
        GROUP BY link_index, view_through
        """,
        parameters=params,
    ).result_rows
    conversions = sum(int(n) for _, through, n, _ in converted if not through)
    value = sum(float(v or 0) for _, through, _, v in converted if not through)
    view_through = sum(int(n) for _, through, n, _ in converted if through)
    view_through_value = sum(float(v or 0) for _, through, _, v in converted if through)
    link_conversions: dict[int, tuple[int, float]] = {}
    for link, through, n, v in converted:
        if not through:
            n0, v0 = link_conversions.get(int(link), (0, 0.0))
            link_conversions[int(link)] = (n0 + int(n), v0 + float(v or 0))
    per_link = client.query(
        f"""
        SELECT link_index, countIf(class = 'human'), uniqExactIf(recipient_index, class = 'human'),
            uniqExactIf(recipient_index, class = 'preview'), countIf(class = 'bot')
        FROM {events} AND type = 'click' AND link_index >= 0
        GROUP BY link_index ORDER BY link_index
        """,
        parameters=params,
    ).result_rows
    by_link = {int(row[0]): row for row in per_link}
    bots = client.query(
        f"SELECT reason, count() AS n FROM {events} AND type = 'click' AND class = 'bot' "
        "GROUP BY reason ORDER BY n DESC, reason",
        parameters=params,
    ).result_rows
    timeline = client.query(
        f"""
        SELECT toStartOfHour(time) AS hour, countIf(type = 'click' AND class = 'human'),
            uniqExactIf(recipient_index, type = 'click' AND class = 'human'),
            uniqExactIf(recipient_index, type = 'click' AND class = 'preview'),
            countIf(type = 'click' AND class = 'bot'), countIf(type = 'conversion' AND outcome != 'view')
        FROM {events}
        GROUP BY hour ORDER BY hour
        """,
        parameters=params,
    ).result_rows

    unique = int(total["unique_clickers"])
    return {
        "campaign_id": campaign_id,
        "name": name,
        "sent_at": _iso(sent_at),
        "recipients": int(recipients),
        "messages": int(messages),
        "human_clicks": int(total["human_clicks"]),
        "unique_clickers": unique,
        "click_through_rate": _rate(unique, int(messages)),
        "views": int(total["views"]),
        "preview_hits": int(total["preview_hits"]),
        "viewed_not_clicked": int(funnel[0]),
        "clicked_after_view": int(funnel[1]),
        "bot_hits": int(total["bot_hits"]),
        "bots_by_reason": {str(reason): int(n) for reason, n in bots},
        "conversions": conversions,
        "conversion_value": value,
        "conversion_rate": _rate(conversions, unique),
        "view_through_conversions": view_through,
        "view_through_value": view_through_value,
        "first_event": _iso(total["first_event"]) if total["human_clicks"] or total["bot_hits"] else None,
        "links": [
            {
                "link_index": i,
                "destination": destination,
                "human_clicks": int(by_link[i][1]) if i in by_link else 0,
                "unique_clickers": int(by_link[i][2]) if i in by_link else 0,
                "views": int(by_link[i][3]) if i in by_link else 0,
                "bot_hits": int(by_link[i][4]) if i in by_link else 0,
                "conversions": link_conversions.get(i, (0, 0.0))[0],
                "conversion_value": link_conversions.get(i, (0, 0.0))[1],
                "conversion_rate": _rate(
                    link_conversions.get(i, (0, 0.0))[0], int(by_link[i][2]) if i in by_link else 0
                ),
                **({"by_variant": by_variant} if by_variant else {}),
            }
            for i, by_variant in slot_destinations.items()
            for destination in [destinations[i] if i < len(destinations) else ""]
        ],
        **variant_figures(
            client, campaign_id, plan, any_conversions=bool(conversions or view_through), sent_per_variant=sent
        ),
        "timeline": [
            {
                "hour": _iso(hour),
                "human_clicks": int(clicks),
                "unique_clickers": int(clickers),
                "views": int(views),
                "bot_hits": int(bot_hits),
                "conversions": int(converted),
            }
            for hour, clicks, clickers, views, bot_hits, converted in timeline
        ],
    }


def _slot_destinations(plan: dict[str, Any]) -> dict[int, dict[str, str]]:
    """Link slot → {variant name: destination} of a variant campaign."""
    slots: dict[int, dict[str, str]] = {}
    for variant in plan["variants"]:
        for i, destination in enumerate(variant["destinations"]):
            slots.setdefault(i, {})[variant["name"]] = destination
    return dict(sorted(slots.items()))


def _with_variant(events: str) -> str:
    """Events (a subquery with ``recipient_index``) with their recipient's variant from the
    messages, for events stored before the sink wrote ``events.variant``. Messages stream on the
    left, so the hash table is built from the events, usually far fewer than the messages."""
    return f"""
        FROM (
            SELECT toInt64(recipient_index) AS recipient_index, variant FROM {DATABASE}.messages FINAL
            WHERE campaign_id = %(c)s
        ) AS m
        INNER JOIN ({events}) AS e ON m.recipient_index = e.recipient_index
    """


#: Per variant: human clicks, unique clickers, views, bot hits (of ``e``, the events).
_CLICK_FIGURES: Final = (
    "countIf(e.type = 'click' AND e.class = 'human'), "
    "uniqExactIf(e.recipient_index, e.type = 'click' AND e.class = 'human'), "
    "uniqExactIf(e.recipient_index, e.type = 'click' AND e.class = 'preview'), "
    "countIf(e.type = 'click' AND e.class = 'bot')"
)

#: Per variant and per variant and link in one pass.
_BY_VARIANT_AND_LINK: Final = "GROUP BY GROUPING SETS ((variant), (variant, e.link_index))"

VariantClicks = tuple[dict[str, tuple[Any, ...]], dict[tuple[str, int], tuple[Any, ...]]]


@overload
def variant_clicks(client: Client, campaign_id: str, *, from_events: Literal[True]) -> VariantClicks | None: ...
@overload
def variant_clicks(client: Client, campaign_id: str, *, from_events: Literal[False]) -> VariantClicks: ...
def variant_clicks(client: Client, campaign_id: str, *, from_events: bool) -> VariantClicks | None:
    """Click figures per variant and per variant and link: ``(totals, per_link)``.

    ``from_events``: read each event's own ``variant`` (written by the sink since migration 4);
    None when an event of a recipient lacks it (stored before), so the caller joins instead.
    The check rides on the same pass: the events of recipients all count, conversions included,
    and a recipient's event without a variant makes a group named ''. Otherwise each event gets
    its recipient's variant by a join with the campaign's messages, which reads them all."""
    source = (
        f"FROM {DATABASE}.events AS e FINAL WHERE campaign_id = %(c)s AND recipient_index >= 0"
        if from_events
        else _with_variant(
            f"SELECT recipient_index, link_index, type, class FROM {DATABASE}.events FINAL "
            "WHERE campaign_id = %(c)s AND type = 'click' AND recipient_index >= 0"
        )
    )
    variant = "e.variant" if from_events else "m.variant"
    totals: dict[str, tuple[Any, ...]] = {}
    per_link: dict[tuple[str, int], tuple[Any, ...]] = {}
    for row in client.query(
        f"SELECT {variant} AS variant, e.link_index, grouping(e.link_index), {_CLICK_FIGURES} {source} "
        + _BY_VARIANT_AND_LINK,
        parameters={"c": campaign_id},
    ).result_rows:
        if row[2]:  # the variant's total: link_index is not in the set
            totals[row[0]] = tuple(row[3:])
        else:
            per_link[(row[0], int(row[1]))] = tuple(row[3:])
    if from_events and "" in totals:
        return None
    return totals, per_link


def _variant_conversions(
    client: Client, campaign_id: str, *, from_events: bool
) -> dict[tuple[str, bool], tuple[int, float]]:
    """Conversions and their value per variant and view-through or not, one per order id."""
    once = (
        "any(outcome = 'view') AS view_through, any(value) AS value FROM "
        f"{DATABASE}.events FINAL WHERE campaign_id = %(c)s AND type = 'conversion' "
        "GROUP BY if(order_id != '', order_id, toString(event_id))"
    )
    if from_events:
        # '' is a conversion not attributed to a recipient, which the join below drops too.
        query = (
            f"SELECT variant, view_through, count(), sum(value) FROM (SELECT any(variant) AS variant, {once}) "
            "WHERE variant != '' GROUP BY variant, view_through"
        )
    else:
        query = (
            "SELECT m.variant, e.view_through, count(), sum(e.value) "
            f"{_with_variant(f'SELECT any(recipient_index) AS recipient_index, {once}')} "
            "GROUP BY m.variant, e.view_through"
        )
    return {
        (row[0], bool(row[1])): (int(row[2]), float(row[3] or 0))
        for row in client.query(query, parameters={"c": campaign_id}).result_rows
    }


def _sent_per_variant(client: Client, campaign_id: str) -> dict[str, int]:
    return {
        str(name): int(n)
        for name, n in client.query(
            f"SELECT variant, count() FROM {DATABASE}.messages FINAL WHERE campaign_id = %(c)s GROUP BY variant",
            parameters={"c": campaign_id},
        ).result_rows
    }


def variant_figures(
    client: Client,
    campaign_id: str,
    plan: dict[str, Any] | None,
    any_conversions: bool = True,
    sent_per_variant: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``variants`` (per variant: messages, clicks, CTR, views, bots, conversions, per link, and
    the comparison with the control) and ``ab_test`` (the verdict), empty for one text. Without
    ``any_conversions`` (the campaign has none) their query is skipped; ``sent_per_variant``:
    the messages per variant, when the caller has counted them.

    Messages per variant are what was sent (``messages``); the events' figures per variant come
    from the events alone when each carries its variant (:func:`variant_clicks`)."""
    if not plan:
        return {"variants": [], "ab_test": None}
    messages = _sent_per_variant(client, campaign_id) if sent_per_variant is None else sent_per_variant
    clicks = variant_clicks(client, campaign_id, from_events=True)
    from_events = clicks is not None
    totals, per_link = clicks or variant_clicks(client, campaign_id, from_events=False)
    converted = _variant_conversions(client, campaign_id, from_events=from_events) if any_conversions else {}
    names = [v["name"] for v in plan["variants"]]
    sent = [int(messages.get(name, 0)) for name in names]
    clickers = [int(totals[name][1]) if name in totals else 0 for name in names]
    test = verdict(names, clickers, sent)
    rows = []
    for variant, n, unique in zip(plan["variants"], sent, clickers, strict=True):
        name = variant["name"]
        human, _, views, bots = totals.get(name, (0, 0, 0, 0))
        conversions, value = converted.get((name, False), (0, 0.0))
        rows.append(
            {
                "name": name,
                "weight": variant["weight"],
                "text": variant["text"],
                "messages": n,
                "human_clicks": int(human),
                "unique_clickers": unique,
                "click_through_rate": _rate(unique, n),
                "views": int(views),
                "bot_hits": int(bots),
                "conversions": conversions,
                "conversion_value": value,
                "conversion_rate": _rate(conversions, unique),
                "view_through_conversions": converted.get((name, True), (0, 0.0))[0],
                "links": [
                    {
                        "link_index": i,
                        "destination": destination,
                        "human_clicks": int(per_link.get((name, i), (0, 0, 0, 0))[0]),
                        "unique_clickers": int(per_link.get((name, i), (0, 0, 0, 0))[1]),
                        "views": int(per_link.get((name, i), (0, 0, 0, 0))[2]),
                        "bot_hits": int(per_link.get((name, i), (0, 0, 0, 0))[3]),
                    }
                    for i, destination in enumerate(variant["destinations"])
                ],
                "vs_control": test["comparisons"].get(name),
            }
        )
    return {
        "variants": rows,
        "ab_test": {"control": test["control"], "winner": test["winner"], "verdict": test["text"]},
    }


def click_page(
    client: Client, campaign_id: str, after: tuple[dt.datetime, uuid.UUID] | None, limit: int = CLICKS_PAGE
) -> list[dict[str, Any]]:
    """Recorded requests and conversions of a campaign, oldest first, after ``after`` (time and
    event id of the last row of the previous page), each with the recipient's phone."""
    params: dict[str, Any] = {"c": campaign_id}
    where = ""
    if after is not None:
        when = after[0] if after[0].tzinfo else after[0].replace(tzinfo=dt.UTC)
        params |= {"ms": round(when.timestamp() * 1000), "id": str(after[1])}
        where = (
            "AND time >= fromUnixTimestamp64Milli(%(ms)s, 'UTC') "
            "AND (toUnixTimestamp64Milli(time), event_id) > (%(ms)s, toUUID(%(id)s))"
        )
    rows = list(
        client.query(
            f"""
            SELECT time, event_id, type, recipient_index, link_index, class, reason, ip, browser, os, device,
                country, user_agent, method, click_id, event_name, value, currency, order_id
            FROM {DATABASE}.events FINAL WHERE campaign_id = %(c)s {where}
            ORDER BY time, event_id LIMIT {int(limit)}
            """,
            parameters=params,
        ).named_results()
    )
    if not rows:
        return rows
    indexes = sorted({int(r["recipient_index"]) for r in rows if r["recipient_index"] >= 0})
    phones: dict[int, tuple[str, str, str]] = {}
    if indexes:
        found = client.query(
            f"SELECT recipient_index, phone, recipient_id, variant FROM {DATABASE}.messages FINAL "
            "WHERE campaign_id = %(c)s AND recipient_index IN %(r)s",
            parameters={"c": campaign_id, "r": indexes},
        ).result_rows
        phones = {int(i): (phone, rid, variant) for i, phone, rid, variant in found}
    destinations_rows = client.query(
        f"SELECT destinations, variants FROM {DATABASE}.campaigns FINAL WHERE id = %(c)s",
        parameters={"c": campaign_id},
    ).result_rows
    destinations: list[str] = list(destinations_rows[0][0]) if destinations_rows else []
    plan = orjson.loads(destinations_rows[0][1]) if destinations_rows and destinations_rows[0][1] else None
    by_variant = {v["name"]: list(v["destinations"]) for v in plan["variants"]} if plan else {}
    for row in rows:
        phone, recipient_id, variant = phones.get(int(row["recipient_index"]), ("", "", ""))
        link = int(row["link_index"])
        row["phone"], row["recipient_id"], row["variant"] = phone, recipient_id, variant
        links = by_variant.get(variant, destinations)
        row["destination"] = links[link] if 0 <= link < len(links) else ""
    return rows


def click_cursor(row: dict[str, Any]) -> tuple[dt.datetime, uuid.UUID]:
    return row["time"], row["event_id"]


def click_json(row: dict[str, Any]) -> dict[str, Any]:
    """A ``click_page`` row as the API writes it."""
    return {name: _plain(row[name]) for name in CLICK_FIELDS}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------
# Read-only SQL

_READ_ONLY_START = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)
READONLY_SETTINGS: Final = {
    "max_execution_time": 60,
    "max_result_rows": SQL_MAX_ROWS,
    "result_overflow_mode": "break",
    # Set last: no setting can be changed after it, by us or by the query.
    "readonly": 1,
}


class SqlError(ValueError):
    """A query the SQL console refuses or ClickHouse rejects; the message is for the user."""


def readonly_client(url: str) -> Client:
    """A client of its own whose session is read-only (ClickHouse's ``readonly = 1``: no writes,
    no DDL, no settings changes, no file or URL table functions). For chDB the session belongs
    to this client only, so the sink's client next to it is not affected."""
    return connect(url, settings=READONLY_SETTINGS)


def run_sql(client: Client, query: str, max_rows: int = SQL_MAX_ROWS) -> tuple[list[str], list[list[Any]]]:
    """Runs a read-only query on a :func:`readonly_client`; returns column names and rows."""
    if not _READ_ONLY_START.match(query):
        raise SqlError("only SELECT, WITH, SHOW, DESCRIBE, EXPLAIN and EXISTS queries are allowed")
    try:
        result = client.query(query)
    except OperationalError:
        raise  # the server is out of reach: not the query's fault
    except Exception as error:
        message = str(error).split("(version", 1)[0].strip()
        raise SqlError(message[:2000]) from None
    rows = [[_plain(v) for v in row] for row in result.result_rows[:max_rows]]
    return list(result.column_names), rows


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, *, footer: bool = True) -> str:
    """``table`` (aligned, for people), ``csv`` or ``jsonl``."""
    if fmt == "jsonl":
        return "".join(orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n" for row in rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _cell(v) for v in row] for row in rows])
        return out.getvalue()
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) and bool(rows) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    lines = [line(columns), line(["-" * w for w in widths])] + [line(row) for row in cells]
    if footer:
        lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict | tuple):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def stats_lines(stats: dict[str, Any]) -> str:
    """A campaign's stats as ``shortcore stats`` prints them."""
    head = [
        ["campaign", f"{stats['campaign_id']} ({stats['name']})" if stats["name"] else stats["campaign_id"]],
        ["messages", f"{stats['messages']:,}"],
        ["human clicks", f"{stats['human_clicks']:,}"],
        ["unique clickers", f"{stats['unique_clickers']:,}"],
        ["click-through rate", f"{stats['click_through_rate']:.2%}"],
        ["views (previews)", f"{stats['views']:,}"],
        ["viewed, not clicked", f"{stats['viewed_not_clicked']:,}"],
        ["clicked after view", f"{stats['clicked_after_view']:,}"],
        ["bot hits", f"{stats['bot_hits']:,}"],
        ["conversions", f"{stats['conversions']:,} (value {stats['conversion_value']:,.2f})"],
    ]
    out = [format_rows(["figure", "value"], head, "table", footer=False).rstrip()]
    if stats["links"]:
        rows = [
            [link["link_index"], _link_destination(link), link["human_clicks"], link["unique_clickers"],
             link["views"], link["bot_hits"]]
            for link in stats["links"]
        ]  # fmt: skip
        columns = ["link", "destination", "clicks", "clickers", "views", "bots"]
        out.append(format_rows(columns, rows, "table", footer=False).rstrip())
    if stats.get("variants"):
        out.append(_variant_table(stats))
    if stats["bots_by_reason"]:
        rows = [[reason, n] for reason, n in stats["bots_by_reason"].items()]
        out.append(format_rows(["bot reason", "hits"], rows, "table", footer=False).rstrip())
    if stats["timeline"]:
        rows = [
            [h["hour"], h["human_clicks"], h["unique_clickers"], h["views"], h["bot_hits"], h["conversions"]]
            for h in stats["timeline"]
        ]
        columns = ["hour", "clicks", "clickers", "views", "bots", "conversions"]
        out.append(format_rows(columns, rows, "table", footer=False).rstrip())
    return "\n\n".join(out) + "\n"


def _link_destination(link: dict[str, Any]) -> str:
    by_variant = link.get("by_variant")
    if not by_variant:
        return str(link["destination"])
    return "; ".join(f"{name}: {destination}" for name, destination in by_variant.items())


def _variant_table(stats: dict[str, Any]) -> str:
    test = stats["ab_test"]
    rows = []
    for v in stats["variants"]:
        vs = v["vs_control"]
        name = f"{v['name']} (control)" if v["name"] == test["control"] else v["name"]
        if vs is None:
            comparison = ["", "", "", ""]
        else:
            difference, interval, p, significant = comparison_cells(vs)
            comparison = [difference, interval, p, "yes" if significant else "no"]
        rows.append(
            [name, f"{v['weight']:g}", v["messages"], v["human_clicks"], v["unique_clickers"],
             f"{v['click_through_rate']:.2%}", v["views"], v["bot_hits"], v["conversions"], *comparison]
        )  # fmt: skip
    columns = [
        "variant", "weight", "messages", "clicks", "clickers", "CTR", "views", "bots", "conversions",
        "CTR vs control (pts)", "95% CI (pts)", "p", "significant",
    ]  # fmt: skip
    return format_rows(columns, rows, "table", footer=False).rstrip() + "\n" + str(test["verdict"])
