"""The test gateway (tests/chhttp.py) behaves like ClickHouse's HTTP interface where clickhouse-connect
and shortcore depend on it: checked with plain HTTP requests, not through the client it stands in for."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
import uuid

import pytest


def _request(
    url: str, query: str | None = None, body: bytes | None = None, headers: dict[str, str] | None = None, **params: str
) -> tuple[int, dict[str, str], bytes]:
    from urllib.parse import urlencode

    fields = ({"query": query} if query is not None else {}) | params
    target = url.replace("default:@", "") + ("?" + urlencode(fields) if fields else "")
    request = urllib.request.Request(target, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_ping(clickhouse_http: str) -> None:
    assert _request(clickhouse_http.rstrip("/") + "/ping")[::2] == (200, b"Ok.\n")


def test_a_query_answers_with_the_headers_the_client_reads(clickhouse_http: str) -> None:
    status, headers, body = _request(
        clickhouse_http, body=b"SELECT 1 AS one, 'x' AS s FORMAT JSONEachRow", query_id="q1"
    )
    assert (status, body) == (200, b'{"one":1,"s":"x"}\n')
    assert headers["X-ClickHouse-Query-Id"] == "q1" and headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Timezone"] and "elapsed_ns" in json.loads(headers["X-ClickHouse-Summary"])
    # The query split between the URL and the body, as the server joins them.
    assert _request(clickhouse_http, "SELECT 2 +", body=b"3")[2] == b"5\n"


def test_errors_are_the_servers(clickhouse_http: str) -> None:
    status, headers, body = _request(clickhouse_http, body=b"SELECT * FROM no_such_table")
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception: ") and b"(UNKNOWN_TABLE) (version " in body
    status, headers, body = _request(clickhouse_http, body=b"SELEC 1")
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62"


def test_url_settings_last_one_query_and_a_get_is_read_only(clickhouse_http: str) -> None:
    probe = b"SELECT getSetting('max_threads')"
    assert _request(clickhouse_http, body=probe, max_threads="3")[2] == b"3\n"
    assert _request(clickhouse_http, body=probe)[2] != b"3\n"
    status, _, body = _request(clickhouse_http, "CREATE TABLE default.never (a UInt8) ENGINE = Memory")
    assert status == 403 and b"(READONLY)" in body
    # readonly=1 next to other settings: checked against the profile, as the server does.
    assert _request(clickhouse_http, body=probe, readonly="1", max_threads="2")[2] == b"2\n"


def test_a_session_keeps_its_settings(clickhouse_http: str) -> None:
    session = str(uuid.uuid4())
    assert _request(clickhouse_http, body=b"SET max_threads = 5", session_id=session)[0] == 200
    probe = b"SELECT getSetting('max_threads')"
    assert _request(clickhouse_http, body=probe, session_id=session)[2] == b"5\n"
    assert _request(clickhouse_http, body=probe, session_id=str(uuid.uuid4()))[2] != b"5\n"
    status, headers, _ = _request(clickhouse_http, body=probe, session_id=str(uuid.uuid4()), session_check="1")
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "372"  # SESSION_NOT_FOUND


def test_insert_data_in_the_body_and_compression(clickhouse_http: str) -> None:
    table = f"default.t_{uuid.uuid4().hex[:8]}"
    create = f"CREATE TABLE {table} (a UInt32, s String) ENGINE = MergeTree ORDER BY a".encode()
    assert _request(clickhouse_http, body=create)[0] == 200
    native = _request(
        clickhouse_http, body=b"SELECT toUInt32(number) AS a, toString(number) AS s FROM numbers(3) FORMAT Native"
    )[2]
    insert = f"INSERT INTO {table} (a, s) FORMAT Native\n".encode()
    status, headers, _ = _request(clickhouse_http, body=insert + native)
    assert status == 200 and json.loads(headers["X-ClickHouse-Summary"])["written_rows"] == "3"
    # The statement in the URL, the gzip-compressed data in the body.
    rows = gzip.compress(b"7\tseven\n")
    posted = _request(
        clickhouse_http, f"INSERT INTO {table} FORMAT TabSeparated", body=rows, headers={"Content-Encoding": "gzip"}
    )
    assert posted[0] == 200
    status, headers, body = _request(
        clickhouse_http,
        body=f"SELECT sum(a), count() FROM {table}".encode(),
        headers={"Accept-Encoding": "gzip"},
        enable_http_compression="1",
    )
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == b"10\t4\n"


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x"])
def test_what_it_does_not_serve_is_a_clear_error(clickhouse_http: str, content_type: str) -> None:
    status, _, body = _request(clickhouse_http, body=b"--x--", headers={"Content-Type": content_type})
    assert status == 500 and b"does not read multipart/form-data" in body
