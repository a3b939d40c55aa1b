"""A test-only ClickHouse HTTP interface over chDB, so the ``http://`` analytics path runs for real.

No ClickHouse server can run on this machine (Debian's is 18.16, far too old for clickhouse-connect;
no registry here ships a newer one; chDB's engine contains ClickHouse's own HTTP handler, but its
embedded build never sets the callback that starts listeners). So this gateway is our own HTTP front
end with ClickHouse's engine (chDB, 26.x) behind it, in a child process of its own like a server: chDB
locks its data directory to one process, and the tests must talk to it over HTTP only.

It serves what clickhouse-connect's ``HttpClient`` sends and reads (see
``clickhouse_connect/driver/_backend/httpcommon.py`` and ``http_sync.py``): ``/ping``; the query in
the ``query`` parameter, the body or both (concatenated with a newline, as the server does); an
``INSERT … FORMAT X`` followed by its data in the body (Native, RowBinary…), plain or chunked,
compressed or not; ``database``, ``default_format``, ``query_id``, ``session_id`` and ``param_*``;
every other parameter as a setting of that query only; response compression when the client sets
``enable_http_compression``; the ``X-ClickHouse-*`` headers; errors as the server sends them (an HTTP
error status, ``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: …`` body).

Not served: multipart/form-data requests (clickhouse-connect uses them only for server-side bind
parameters too big for the URL, or external data; shortcore binds on the client side), the
``decompress=1`` ClickHouse-framed request body, ``client_protocol_version`` (ignored, as a proxy
that strips it would; the client then reads Native without block info), and session temporary
tables (a session keeps its ``SET`` settings and its lock, nothing else).

Run as ``python chhttp.py DATA_DIR PORT``; it prints ``ready PORT`` once listening and exits when
its standard input closes, so a test that dies leaves no server behind. :class:`Gateway` does that.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
import zlib
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

# Parameters of the HTTP interface itself; every other one is a setting.
TRANSPORT_PARAMS: Final = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "quota_key",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "role",
        "user",
        "password",
    }
)
# The data of an INSERT starts after its FORMAT name and the rest of that line.
INSERT_WITH_DATA = re.compile(rb"^\s*(INSERT\s+INTO\s.*?)\s+FORMAT\s+(\w+)[ \t]*(?:\r?\n|$)", re.IGNORECASE | re.DOTALL)
TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
SET_QUERY = re.compile(r"^\s*SET\s+(.*?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
USE_QUERY = re.compile(r"^\s*USE\s+`?(\w+)`?\s*;?\s*$", re.IGNORECASE)
CODE = re.compile(r"Code: (\d+)\. ")
# The server's status for some exception codes (HTTPHandler.cpp, exceptionCodeToHTTPStatus);
# anything else is a 500. The client treats them alike except 429/503/504, which it retries.
HTTP_STATUS: Final = {
    164: 403,  # READONLY
    497: 403,  # ACCESS_DENIED
    516: 401,  # AUTHENTICATION_FAILED
    6: 400,  # CANNOT_PARSE_TEXT
    27: 400,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33: 400,  # CANNOT_READ_ALL_DATA
    62: 400,  # SYNTAX_ERROR
    115: 400,  # UNKNOWN_SETTING
    60: 404,  # UNKNOWN_TABLE
    81: 404,  # UNKNOWN_DATABASE
}
CONTENT_TYPES: Final = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
}


class QueryError(Exception):
    """A ClickHouse exception, with its code, for the HTTP error response."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _compress(data: bytes, accept: str) -> tuple[bytes, str | None]:
    """The server's choice among the encodings the client accepts (zstd first, like ClickHouse)."""
    accepted = {e.strip().split(";")[0] for e in accept.split(",")}
    if "zstd" in accepted:
        from backports import zstd

        return zstd.compress(data), "zstd"
    if "lz4" in accepted:
        import lz4.frame

        return lz4.frame.compress(data), "lz4"
    if "gzip" in accepted:
        return gzip.compress(data), "gzip"
    if "deflate" in accepted:
        return zlib.compress(data), "deflate"
    return data, None


def _decompress(data: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return data
    if encoding == "zstd":
        from backports import zstd

        return zstd.decompress(data)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    raise QueryError(1, f"DB::Exception: Unknown HTTP Content-Encoding {encoding!r}. (UNSUPPORTED_METHOD)")


def _sql_value(value: str) -> str:
    """A setting's URL value as SQL: numbers as they are, anything else a quoted string."""
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Session:
    """A ``session_id``'s settings (from its ``SET`` queries) and its lock: ClickHouse refuses a
    second query in a session that is busy (SESSION_IS_LOCKED), and so does this."""

    def __init__(self) -> None:
        self.settings: dict[str, str] = {}
        self.database: str | None = None
        self.lock = threading.Lock()


class Engine:
    """chDB in this process: a connection of its own per query, so a query's settings end with
    it, and one lock, as chDB runs one statement at a time."""

    def __init__(self, data_dir: str) -> None:
        import chdb

        self._chdb = chdb
        self.path = data_dir
        self.main = chdb.connect(data_dir)  # keeps the engine open between queries
        self.lock = threading.Lock()
        self.version = self.main.query("SELECT version()", "TabSeparated").bytes().decode().strip()
        self.timezone = self.main.query("SELECT timezone()", "TabSeparated").bytes().decode().strip()
        self.sessions: dict[str, Session] = {}

    def execute(
        self, text: bytes, settings: dict[str, str], database: str | None, fmt: str, params: dict[str, str]
    ) -> tuple[bytes, str, dict[str, int]]:
        """Runs one statement (with its INSERT data); returns the body, its format and the summary."""
        conn = self._chdb.connect(self.path)
        try:
            self._run(conn, "USE default" if database is None else f"USE `{database}`")
            # readonly last: the server checks a request's settings against the profile, not
            # against each other, so readonly=1 next to other settings is allowed.
            for name, value in sorted(settings.items(), key=lambda kv: kv[0] == "readonly"):
                self._run(conn, f"SET {name} = {_sql_value(value)}")
            insert = INSERT_WITH_DATA.match(text)
            if insert is not None:
                head, data = insert.group(1).decode(), text[insert.end() :]
                try:
                    inserter = conn.send_insert(head, insert.group(2).decode())
                    if data:
                        inserter.append(data)
                    done = inserter.finish()
                except Exception as error:  # chDB raises RuntimeError or its ChdbError
                    raise _query_error(error) from None
                summary = {"written_rows": done.rows_written, "written_bytes": done.bytes_written}
                return b"", fmt, summary | {"elapsed_ns": int(done.elapsed * 1e9)}
            try:
                query = text.decode()
            except UnicodeDecodeError:
                raise QueryError(62, "DB::Exception: the query is not UTF-8. (SYNTAX_ERROR)") from None
            found = TRAILING_FORMAT.search(query)
            result = self._run(conn, query, fmt, params)
            summary = {
                "read_rows": result.rows_read(),
                "read_bytes": result.bytes_read(),
                "written_rows": result.rows_written(),
                "written_bytes": result.bytes_written(),
                "result_rows": result.rows_read(),
                "result_bytes": result.size(),
                "elapsed_ns": int(result.elapsed() * 1e9),
            }
            return result.bytes(), found.group(1) if found else fmt, summary
        finally:
            conn.close()

    @staticmethod
    def _run(conn: Any, query: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> Any:
        try:
            return conn.query(query, fmt, params=params or {})
        except Exception as error:  # chDB raises RuntimeError or its ChdbError
            raise _query_error(error) from None


def _query_error(error: Exception) -> QueryError:
    text = str(error)
    found = CODE.search(text)
    if found is None:
        return QueryError(1001, f"DB::Exception: {text}. (STD_EXCEPTION)")
    return QueryError(int(found.group(1)), text[found.end() :])


#: Queries matching ``CHHTTP_DROP`` (a regular expression, from :class:`Gateway`'s ``drop``) get
#: their connection closed with no answer, as from a server going away mid-command.
DROP: Final = re.compile(os.environ["CHHTTP_DROP"].encode()) if os.environ.get("CHHTTP_DROP") else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clickhouse-connect's pool expects
    engine: Engine

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.rstrip("/") == "/ping" or (url.path == "/" and not body and "query" not in params):
            self._send(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
            return
        if url.path != "/":
            self._error(QueryError(1, f"DB::Exception: There is no handle {url.path}. (UNSUPPORTED_METHOD)"), 404)
            return
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.engine.timezone}
        session: Session | None = None
        try:
            if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
                raise QueryError(1, "DB::Exception: the test gateway does not read multipart/form-data. (UNSUPPORTED)")
            if params.get("decompress") == "1":
                raise QueryError(1, "DB::Exception: the test gateway does not read decompress=1 bodies. (UNSUPPORTED)")
            body = _decompress(body, self.headers.get("Content-Encoding", ""))
            text = (params["query"].encode() + b"\n" + body) if "query" in params else body
            if DROP is not None and DROP.search(text):
                # A server gone in the middle of a command: the connection closes with no answer.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if not text.strip():
                raise QueryError(62, "DB::Exception: Empty query. (SYNTAX_ERROR)")
            settings = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
            if self.command == "GET" and "readonly" not in settings:
                settings["readonly"] = "2"  # the server runs a GET read-only
            database = params.get("database") or None
            if "session_id" in params:
                session = self._session(params)
                settings = session.settings | settings
                database = database or session.database
            binds = {k[len("param_") :]: v for k, v in params.items() if k.startswith("param_")}
            fmt = params.get("default_format") or "TabSeparated"
            with self.engine.lock:
                data, fmt, summary = self.engine.execute(text, settings, database, fmt, binds)
            if session is not None:
                self._remember(session, text)
        except QueryError as error:
            self._error(error, HTTP_STATUS.get(error.code, 500), headers)
            return
        except Exception as error:  # a bug of the gateway: an answer the client reports, not a dropped connection
            self._error(QueryError(1001, f"DB::Exception: gateway: {error!r}. (STD_EXCEPTION)"), 500, headers)
            return
        finally:
            if session is not None:
                session.lock.release()
        headers["X-ClickHouse-Format"] = fmt
        headers["X-ClickHouse-Summary"] = json.dumps({k: str(v) for k, v in summary.items()})
        headers["Content-Type"] = CONTENT_TYPES.get(fmt, "application/octet-stream")
        if settings.get("enable_http_compression") == "1" and data:
            data, encoding = _compress(data, self.headers.get("Accept-Encoding", ""))
            if encoding:
                headers["Content-Encoding"] = encoding
        self._send(200, data, headers)

    def _session(self, params: dict[str, str]) -> Session:
        """The request's session, locked for it; raises as the server does when it is busy."""
        session_id = params["session_id"]
        with self.engine.lock:
            session = self.engine.sessions.get(session_id)
            if session is None:
                if params.get("session_check") == "1":
                    raise QueryError(372, f"DB::Exception: Session {session_id} not found. (SESSION_NOT_FOUND)")
                session = self.engine.sessions[session_id] = Session()
        if not session.lock.acquire(blocking=False):
            message = f"DB::Exception: Session {session_id} is locked by a concurrent client. (SESSION_IS_LOCKED)"
            raise QueryError(373, message)
        return session

    @staticmethod
    def _remember(session: Session, text: bytes) -> None:
        """A ``SET`` or ``USE`` that succeeded lasts for the session, as on the server."""
        query = text.decode(errors="replace")
        if (used := USE_QUERY.match(query)) is not None:
            session.database = used.group(1)
        elif (assigned := SET_QUERY.match(query)) is not None:
            for part in assigned.group(1).split(","):
                name, _, value = part.partition("=")
                session.settings[name.strip()] = value.strip().strip("'")

    def _error(self, error: QueryError, status: int, headers: dict[str, str] | None = None) -> None:
        message = str(error)
        body = f"Code: {error.code}. {message} (version {self.engine.version})\n".encode()
        extra = {"X-ClickHouse-Exception-Code": str(error.code), "Content-Type": "text/plain; charset=UTF-8"}
        self._send(status, body, (headers or {}) | extra)

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Keep-Alive", "timeout=10")
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) closed the connection before the answer: normal.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(data_dir: str, port: int) -> None:
    Handler.engine = Engine(data_dir)
    server = Server(("127.0.0.1", port), Handler)
    print(f"ready {server.server_address[1]}", flush=True)

    def orphaned() -> None:
        sys.stdin.read()  # EOF: the test process is gone
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    server.serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """The gateway as a child process on a fixed port, so it can be stopped and started again
    (an outage) at the same URL, with the same data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, drop: str | None = None) -> None:
        self.data_dir = data_dir
        self.drop = drop  # see DROP
        self.port = port or free_port()
        self.url = f"http://default:@127.0.0.1:{self.port}/"
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(self.data_dir), str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "CHHTTP_DROP": self.drop or ""},
        )
        assert self._process.stdout is not None
        # The first line is ``ready PORT``; a process that exits before it failed to start.
        line = self._process.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"the ClickHouse HTTP gateway did not start: {line!r}")
        return self.url

    def pause(self) -> None:
        """A hung server: the kernel still accepts connections and takes requests, nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused process would not see the SIGTERM
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
