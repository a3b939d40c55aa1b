"""Click ids: what a redirect hands out in ``sc_click`` (the landing page URL and the cookie).

A click id is ``<event id>.<mac>``: the click's event id (a UUID) and 12 base64url characters
(72 bits) of keyed BLAKE2s over it, the key derived from the deployment's secret. Event ids are UUIDv7 (time,
a per-process random part, a counter), so without the MAC anyone holding one click id could guess
the ids of clicks made around the same time and have a conversion credited to someone else's
click. With it, an id that was not issued by this deployment, or was altered, does not name any
click: the pixel stores such a conversion as unattributed, and the API refuses it with a 422.

Keyed BLAKE2s is a MAC by design and one pass over the 36 bytes (hashlib, in C): about 0.6 µs
a redirect, where HMAC-SHA256 took 1.7 µs (``redirect.click_id_us`` in ``bench/bench_edge.py``).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from typing import Any, Final

#: Must match the pattern in :data:`shortcore.conversions.CONVERSION_SCRIPT`.
CLICK_ID_PATTERN: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.[A-Za-z0-9_-]{12}"
CLICK_ID_LENGTH: Final = 49

_CLICK_ID = re.compile(CLICK_ID_PATTERN)
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class ClickIds:
    """Issues and checks the click ids of one deployment."""

    __slots__ = ("_key",)

    def __init__(self, secret: bytes) -> None:
        # A key of its own, so a click id's MAC says nothing about tokens or conversion tags.
        self._key = hmac.digest(secret, b"shortcore click id v1", "sha256")

    def _mac(self, event_id: str) -> str:
        digest = hashlib.blake2s(event_id.encode(), key=self._key, digest_size=9).digest()
        return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).decode()

    def issue(self, event_id: str) -> str:
        """The click id of the click whose event id is ``event_id``."""
        return f"{event_id}.{self._mac(event_id)}"

    def event_id(self, click_id: Any) -> str | None:
        """The event id a click id names, or None when it is malformed, made up or altered."""
        if not is_click_id(click_id):
            return None
        event_id, mac = click_id[:36], click_id[37:]
        return event_id if hmac.compare_digest(mac, self._mac(event_id)) else None


def is_click_id(value: Any) -> bool:
    """Whether ``value`` has the shape of a click id (whether it is genuine is :meth:`ClickIds.event_id`)."""
    return isinstance(value, str) and len(value) == CLICK_ID_LENGTH and _CLICK_ID.fullmatch(value) is not None
