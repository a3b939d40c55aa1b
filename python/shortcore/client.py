"""A small client of the control API, for the CLI: campaign creation with progress bars.

The CLI goes through the HTTP API of a running ``shortcore serve`` rather than opening the stores
itself: the embedded analytics store belongs to one process, the server.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2 as httpx
import orjson

CHUNK = 256 * 1024


class ClientError(Exception):
    """Anything that stops a CLI command; the message is for the user."""


@dataclass(frozen=True, slots=True)
class Api:
    url: str
    key: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url.rstrip("/"), headers={"Authorization": f"Bearer {self.key}"}, timeout=3600
        )


def multipart_body(
    fields: dict[str, str], file_field: str, file: IO[bytes], on_bytes: Callable[[int], None]
) -> tuple[str, Iterator[bytes]]:
    """A ``multipart/form-data`` body streamed from ``file``, calling ``on_bytes`` as it goes."""
    boundary = "shortcore-" + secrets.token_hex(12)

    def parts() -> Iterator[bytes]:
        for name, value in fields.items():
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="recipients.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        while chunk := file.read(CHUNK):
            on_bytes(len(chunk))
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    return f"multipart/form-data; boundary={boundary}", parts()


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['message']} ({error['code']}, HTTP {response.status_code})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


def create_campaign(
    api: Api,
    recipients: Path,
    fields: dict[str, str],
    out: IO[bytes] | None,
    on_upload: Callable[[int], None],
    on_message: Callable[[int], None],
) -> dict[str, Any]:
    """Uploads the CSV, creates the campaign and, with ``out``, writes its messages as JSON lines."""
    try:
        with api.client() as client, recipients.open("rb") as file:
            content_type, body = multipart_body(fields, "recipients", file, on_upload)
            response = client.post("/api/v1/campaigns", content=body, headers={"Content-Type": content_type})
            if response.status_code != 201:
                raise ClientError(_error_text(response))
            created: dict[str, Any] = response.json()
            if out is not None:
                with client.stream("GET", created["messages_url"]) as stream:
                    if stream.status_code != 200:
                        stream.read()
                        raise ClientError(_error_text(stream))
                    for line in stream.iter_lines():
                        if line:
                            out.write(line.encode() + b"\n")
                            on_message(1)
            return created
    except httpx.ConnectError:
        raise ClientError(f"no shortcore server at {api.url} (start one with `shortcore serve`)") from None
    except httpx.HTTPError as error:
        raise ClientError(f"talking to {api.url}: {error}") from None


def _get(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        with api.client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.ConnectError:
        raise ClientError(f"no shortcore server at {api.url} (start one with `shortcore serve`)") from None
    except httpx.HTTPError as error:
        raise ClientError(f"talking to {api.url}: {error}") from None
    if response.status_code != 200:
        raise ClientError(_error_text(response))
    return response


def campaign_stats(api: Api, campaign_id: str) -> dict[str, Any]:
    """``GET /api/v1/campaigns/{id}/stats``."""
    stats: dict[str, Any] = _get(api, "GET", f"/api/v1/campaigns/{campaign_id}/stats").json()
    return stats


def sql(api: Api, query: str, fmt: str) -> str:
    """``POST /api/v1/sql`` with the admin key; the rows as text in ``fmt`` (table, csv, jsonl)."""
    return _get(api, "POST", "/api/v1/sql", json={"query": query, "format": fmt}).text


def summary_lines(created: dict[str, Any]) -> list[str]:
    segments = created["segments"]
    change = segments["change"]
    lines = [
        f"campaign    {created['id']} ({created['name']}) on {created['domain']}",
        f"recipients  {created['recipients']:,}",
        f"invalid     {created['invalid']:,}",
        f"duplicates  {created['duplicates']:,}",
        f"segments    {segments['total']:,} ({change:+,} from shortening; {segments['without_shortening']:,} without)",
    ]
    for variant in created.get("variants", []):
        lines.append(f"variant     {variant['name']}: {variant['messages']:,} messages (weight {variant['weight']:g})")
    for kind in ("invalid", "duplicates"):
        for row in created["errors"][kind][:5]:
            lines.append(f"  line {row['line']}: {row['value']!r} {row['reason']}")
    return lines


def dumps(data: object) -> str:
    return orjson.dumps(data).decode()
