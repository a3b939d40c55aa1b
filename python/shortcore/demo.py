"""``shortcore demo``: serve, then create a demo account and campaign and print how to use them.

The demo's short links point at the local edge (``http://127.0.0.1:8000/<token>``) unless
``SHORTCORE_BASE_URL`` says otherwise, so they can be clicked on this machine straight away.
"""

from __future__ import annotations

import os
from typing import Any

import httpx2 as httpx

from shortcore import accounts

DEMO_TEXT = "Spring sale, 20% off until Sunday: https://example.com/spring?ref=sms - stores: www.example.com/stores"
# US numbers in the 555-01xx block are set aside for fiction: valid in form, never anyone's phone.
DEMO_RECIPIENTS = [
    {"phone": "+12025550101", "id": "ana", "first_name": "Ana"},
    {"phone": "+12025550102", "id": "ben", "first_name": "Ben"},
    {"phone": "(202) 555-0103", "id": "cy", "first_name": "Cy"},
]


def create_demo(control_url: str, redis_url: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Creates the demo account (returning its API key), a campaign and its messages."""

    key = accounts.new_api_key(redis_url, "demo", default_region="US")
    with httpx.Client(base_url=control_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        response = client.post(
            "/api/v1/campaigns", json={"name": "demo", "text": DEMO_TEXT, "recipients": DEMO_RECIPIENTS, "utm": True}
        )
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        messages = client.get(created["messages_url"])
        messages.raise_for_status()
        rows = [httpx_json(line) for line in messages.text.splitlines() if line]
        report = client.get(f"/api/v1/campaigns/{created['id']}/report-link")
        report.raise_for_status()
        created["report_url"] = report.json()["url"]
    return key, created, rows


def httpx_json(line: str) -> dict[str, Any]:
    import orjson

    row: dict[str, Any] = orjson.loads(line)
    return row


def announce(edge_url: str, control_url: str) -> None:
    """The ``on_ready`` of ``shortcore demo``: create the demo and print it."""
    try:
        key, created, rows = create_demo(control_url, os.environ["SHORTCORE_REDIS_URL"])
    except (httpx.HTTPError, OSError, KeyError) as error:
        print(f"shortcore demo: could not create the demo campaign: {error}", flush=True)
        return
    lines = [
        "",
        "shortcore demo is running.",
        f"  edge (short links)   {edge_url}",
        f"  control API          {control_url}/api/v1  (OpenAPI: {control_url}/openapi.json)",
        f"  API key              {key}",
        f"  campaign             {created['id']} ({created['recipients']} recipients)",
        "",
        "Personalised messages:",
    ]
    for row in rows:
        lines.append(f"  {row['phone']}: {row['text']}")
    lines += [
        "",
        "Try:",
        f"  curl -si {rows[0]['links'][0]}",
        f"  curl -s -H 'Authorization: Bearer {key}' {control_url}/api/v1/campaigns/{created['id']}/stats",
        f"  the report page (a signed link, valid 7 days): {created['report_url']}",
        "Stop with Ctrl-C.",
        "",
    ]
    print("\n".join(lines), flush=True)
