"""The campaign report page for people: one self-contained HTML page (inline CSS and SVG, no
script, nothing fetched from elsewhere), and the signed links that open it in a browser.

A browser cannot send ``Authorization: Bearer``, and an API key in a URL ends up in histories and
proxy logs, so the page also opens with a **signed, expiring link**: ``GET
/api/v1/campaigns/{id}/report-link`` answers ``/reports/campaigns/{id}?exp=<unix>&sig=<mac>``,
where the MAC is HMAC-SHA256 over the account, the campaign and ``exp`` under a key derived from
``SHORTCORE_SECRET``. A link shows one campaign of one account until it expires; it cannot be
changed to show another.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence
from html import escape
from typing import Any, Final

from shortcore.significance import comparison_cells

DEFAULT_TTL: Final = 7 * 86_400
MAX_TTL: Final = 90 * 86_400
MIN_TTL: Final = 60

#: Headers of every report response: nothing loads from elsewhere, the signed URL does not leak
#: through Referer, and no cache keeps a copy.
PAGE_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


def _key(secret: bytes) -> bytes:
    # A key of its own, so a report MAC can never be mistaken for any other signature shortcore makes.
    return hmac.new(secret, b"shortcore report link v1", hashlib.sha256).digest()


def sign(secret: bytes, account: str, campaign_id: str, expires: int) -> str:
    mac = hmac.new(_key(secret), f"{account}\n{campaign_id}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def link_query(secret: bytes, account: str, campaign_id: str, expires: int) -> str:
    return f"exp={expires}&sig={sign(secret, account, campaign_id, expires)}"


def check(secret: bytes, account: str, campaign_id: str, expires: str, signature: str, now: float) -> str | None:
    """None when the link is good, else why not (for the 401 page)."""
    if not expires.isdigit() or not signature or len(expires) > 12:
        return "This report link is incomplete."
    if not hmac.compare_digest(sign(secret, account, campaign_id, int(expires)).encode(), signature.encode()):
        return "This report link is not valid."
    if int(expires) <= now:
        return "This report link has expired; ask for a new one."
    return None


# ---------------------------------------------------------------------------------------------
# The page

_STYLE: Final = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.sub{color:#5b6475;margin:0 0 16px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.tile{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:10px 12px}
.tile b{display:block;font-size:22px}.tile span{color:#5b6475;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e1e4ea}
.scroll{overflow-x:auto;border:1px solid #e1e4ea}.scroll table{border:0}
th,td{padding:6px 8px;border-bottom:1px solid #eceef2;text-align:right;white-space:nowrap;font-size:14px}
th:first-child,td:first-child,td.l{text-align:left}td.l{white-space:normal;word-break:break-all}
th{background:#fafbfc;font-weight:600}
.verdict{background:#fff;border-left:4px solid #8a94a6;padding:10px 14px;margin:10px 0}
.verdict.win{border-color:#1f9d55}
.yes{color:#1f9d55;font-weight:600}.no{color:#5b6475}
svg{background:#fff;border:1px solid #e1e4ea;border-radius:8px;width:100%;height:auto}
.note{color:#5b6475;font-size:13px}
"""


def _n(value: Any) -> str:
    return f"{int(value):,}"


def _pct(value: float) -> str:
    return f"{value:.2%}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _tile(label: str, value: str) -> str:
    return f'<div class="tile"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i in left else ''}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    # Wide tables (the A/B one has fourteen columns) scroll inside their box on narrow screens.
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def timeline_svg(timeline: Sequence[dict[str, Any]], width: int = 960, height: int = 200) -> str:
    """Human clicks per hour as an inline SVG bar chart (views as a thinner bar beside them)."""
    if not timeline:
        return '<p class="note">No requests yet.</p>'
    timeline = _every_hour(timeline)
    top = max(max(h["human_clicks"], h["views"]) for h in timeline) or 1
    pad_left, pad_bottom, pad_top = 40, 24, 10
    plot_w, plot_h = width - pad_left - 10, height - pad_bottom - pad_top
    step = plot_w / len(timeline)
    bar = max(1.0, step * 0.6)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Human clicks per hour">',
        f'<line x1="{pad_left}" y1="{pad_top + plot_h}" x2="{width - 10}" y2="{pad_top + plot_h}" stroke="#c7ccd6"/>',
        f'<text x="{pad_left - 6}" y="{pad_top + 10}" font-size="11" text-anchor="end" fill="#5b6475">{top:,}</text>',
        f'<text x="{pad_left - 6}" y="{pad_top + plot_h}" font-size="11" text-anchor="end" fill="#5b6475">0</text>',
    ]
    for i, hour in enumerate(timeline):
        x = pad_left + i * step + (step - bar) / 2
        clicks_h = hour["human_clicks"] / top * plot_h
        views_h = hour["views"] / top * plot_h
        label = escape(f"{hour['hour']}: {hour['human_clicks']:,} clicks, {hour['views']:,} views")
        parts.append(
            f"<g><title>{label}</title>"
            f'<rect x="{x:.1f}" y="{pad_top + plot_h - clicks_h:.1f}" width="{bar:.1f}" height="{clicks_h:.1f}" '
            'fill="#3b6fd8"/>'
            f'<rect x="{x + bar * 0.7:.1f}" y="{pad_top + plot_h - views_h:.1f}" width="{bar * 0.3:.1f}" '
            f'height="{views_h:.1f}" fill="#f0a23b"/></g>'
        )
    first, last = timeline[0]["hour"] or "", timeline[-1]["hour"] or ""
    parts.append(
        f'<text x="{pad_left}" y="{height - 6}" font-size="11" fill="#5b6475">{escape(first[:13])}h</text>'
        f'<text x="{width - 10}" y="{height - 6}" font-size="11" text-anchor="end" fill="#5b6475">'
        f"{escape(last[:13])}h</text></svg>"
    )
    return "".join(parts)


MAX_BARS: Final = 24 * 31


def _every_hour(timeline: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hours without a request as zero bars, so the chart's x axis is time (up to a month)."""
    try:
        hours = {dt.datetime.fromisoformat(h["hour"].replace("Z", "+00:00")): h for h in timeline}
    except (AttributeError, TypeError, ValueError):
        return list(timeline)
    first, last = min(hours), max(hours)
    span = int((last - first).total_seconds() // 3600) + 1
    if span > MAX_BARS:
        return list(timeline)
    filled = []
    for i in range(span):
        at = first + dt.timedelta(hours=i)
        iso = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        filled.append(hours.get(at) or {"hour": iso, "human_clicks": 0, "views": 0})
    return filled


def _variants_section(stats: dict[str, Any]) -> str:
    variants = stats.get("variants") or []
    test = stats.get("ab_test")
    if not variants or not test:
        return ""
    rows = []
    for v in variants:
        vs = v.get("vs_control")
        if vs is None:
            comparison = ["control", "", "", ""]
        else:
            difference, interval, p, significant = comparison_cells(vs)
            comparison = [
                escape(f"{difference} pts"),
                escape(interval),
                escape(p),
                '<span class="yes">yes</span>' if significant else '<span class="no">no</span>',
            ]
        rows.append(
            [
                escape(v["name"]) + (" (control)" if v["name"] == test["control"] and v["name"] != "control" else ""),
                escape(f"{v['weight']:g}"),
                _n(v["messages"]),
                _n(v["human_clicks"]),
                _n(v["unique_clickers"]),
                _pct(v["click_through_rate"]),
                _n(v["views"]),
                _n(v["bot_hits"]),
                _n(v["conversions"]),
                _money(v["conversion_value"]),
                _pct(v["conversion_rate"]),
                *comparison,
            ]
        )
    headers = [
        "variant", "weight", "messages", "clicks", "clickers", "CTR", "views", "bots", "conv.", "value",
        "conv. rate", "CTR vs control", "95% CI (pts)", "p", "significant",
    ]  # fmt: skip
    texts = _table(
        ["variant", "text"],
        [[escape(v["name"]), escape(v["text"])] for v in variants],
        left=(0, 1),
    )
    css = "verdict win" if test["winner"] else "verdict"
    return (
        "<h2>A/B test</h2>"
        f'<div class="{css}">{escape(test["verdict"])}</div>'
        + _table(headers, rows)
        + '<p class="note">Click-through rate is unique clickers over messages. The difference to the control '
        "has a 95% confidence interval; p is the two-proportion z-test's two-sided p-value, adjusted for the "
        "number of comparisons (Bonferroni). A difference is called significant when p &lt; 0.05 and each side "
        "has at least 5 clickers and 5 non-clickers.</p>"
        "<h2>Variant texts</h2>" + texts
    )


def render_report(stats: dict[str, Any], now: dt.datetime | None = None) -> str:
    """The report page of one campaign from its stats (:func:`shortcore.stats.campaign_stats`)."""
    now = now or dt.datetime.now(dt.UTC)
    name = stats.get("name") or stats["campaign_id"]
    tiles = "".join(
        [
            _tile("messages", _n(stats["messages"])),
            _tile("human clicks", _n(stats["human_clicks"])),
            _tile("unique clickers", _n(stats["unique_clickers"])),
            _tile("click-through rate", _pct(stats["click_through_rate"])),
            _tile("views (previews)", _n(stats["views"])),
            _tile("bot hits", _n(stats["bot_hits"])),
            _tile("conversions", _n(stats["conversions"])),
            _tile("conversion value", _money(stats["conversion_value"])),
            _tile("conversion rate", _pct(stats["conversion_rate"])),
        ]
    )
    links = _table(
        ["link", "destination", "clicks", "clickers", "views", "bots", "conv.", "value"],
        [
            [
                str(link["link_index"] + 1),
                escape(link["destination"])
                if "by_variant" not in link
                else "<br>".join(escape(f"{k}: {d}") for k, d in link["by_variant"].items()),
                _n(link["human_clicks"]),
                _n(link["unique_clickers"]),
                _n(link["views"]),
                _n(link["bot_hits"]),
                _n(link["conversions"]),
                _money(link["conversion_value"]),
            ]
            for link in stats["links"]
        ],
        left=(0, 1),
    )
    bots = (
        "<h2>Bots by reason</h2>"
        + _table(["reason", "hits"], [[escape(r), _n(n)] for r, n in stats["bots_by_reason"].items()])
        if stats["bots_by_reason"]
        else ""
    )
    sent = f"sent {escape(stats['sent_at'])} · " if stats.get("sent_at") else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1"><meta name=robots content=noindex>'
        f"<title>{escape(name)} · shortcore report</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{escape(name)}</h1>"
        f'<p class="sub">Campaign {escape(stats["campaign_id"])} · {sent}{_n(stats["recipients"])} recipients · '
        f"report of {escape(now.strftime('%Y-%m-%d %H:%M UTC'))}</p>"
        f'<div class="tiles">{tiles}</div>'
        "<h2>Human clicks per hour</h2>"
        f"{timeline_svg(stats['timeline'])}"
        '<p class="note">Blue: human clicks; orange: views (link previews).</p>'
        f"{_variants_section(stats)}"
        f"<h2>Links</h2>{links}{bots}"
        "</main></body></html>\n"
    )


def error_page(title: str, message: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><main><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        "</main></body></html>\n"
    )
