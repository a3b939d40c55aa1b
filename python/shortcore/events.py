"""Events: their encoding, the group-commit writer that puts them into the Redis stream, and the
spool that keeps them while Redis is unreachable.

Stream ``sc:{events}``: one entry per event with one field ``e``, the event as a JSON object (see
``DESIGN.md``, "Hot path and event flow", for its fields). Writes go in batches: every event
submitted while the previous batch was in flight goes in the next one, as one ``EVALSHA`` of
:data:`COMMIT_SCRIPT` on one raw connection (RESP built here, no client library on this path).

Exactly once: each batch carries a tag ``(writer, n)``. The script adds the batch's events and
records ``n`` under ``writer`` in the hash ``sc:{events}:committed`` atomically, and does nothing
when ``n`` is already recorded. A batch whose outcome is unknown (the connection broke after it
was sent) is spooled with its tag and the writer takes a fresh id, so replaying the tagged batch
later is a no-op if Redis had applied it. Events spooled while Redis was down carry no tag; their
replay file is cut into fixed chunks tagged ``(replay:<file>, chunk)``, so a replay that breaks
half way can be restarted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from redis.exceptions import NoScriptError

from shortcore.store import AnyRedis, is_cluster_url

log = logging.getLogger(__name__)

STREAM_KEY: Final = "sc:{events}"
COMMITTED_KEY: Final = "sc:{events}:committed"
EVENT_FIELD: Final = "e"
#: Version of the event JSON; the sink reads ``v``. Must match the sink's expectation.
EVENT_VERSION: Final = 1

COMMIT_SCRIPT: Final = """
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen and tonumber(seen) >= tonumber(ARGV[2]) then return -1 end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return #ARGV - 2
"""
COMMIT_SHA: Final = hashlib.sha1(COMMIT_SCRIPT.encode()).hexdigest()

REPLAY_CHUNK: Final = 500


# ---------------------------------------------------------------------------------------------
# Event ids


class EventIds:
    """UUIDv7-shaped event ids: 48 bits of Unix milliseconds, then 74 bits that are a random
    per-process prefix and a counter, so ids are unique across processes without coordination
    and sort by time."""

    def __init__(self) -> None:
        prefix = secrets.randbits(42)
        self._counter = secrets.randbits(20)
        # Version 7, then 12 bits of the prefix; variant 0b10, then 14 more; the last 16 bits of
        # the prefix sit above the 32-bit counter.
        rand_a, rand_b, low = prefix >> 30, (prefix >> 16) & 0x3FFF, prefix & 0xFFFF
        self._middle = f"-7{rand_a:03x}-{0x8000 | rand_b:04x}-"
        self._low = low << 32
        self._ms = -1
        self._head = ""

    def new(self, now: float) -> str:
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        ms = int(now * 1000)
        if ms != self._ms:  # the time part changes once a millisecond, not once a request
            hexed = f"{ms & 0xFFFFFFFFFFFF:012x}"
            self._ms, self._head = ms, f"{hexed[:8]}-{hexed[8:]}{self._middle}"
        return f"{self._head}{self._low | self._counter:012x}"


# ---------------------------------------------------------------------------------------------
# RESP on a raw connection


class ProtocolError(ConnectionError):
    """Redis answered something that is not RESP."""


class ReplyError(Exception):
    """Redis answered an error reply."""


def encode_command(args: Sequence[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    line = await reader.readuntil(b"\r\n")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        return ReplyError(body.decode("utf-8", "replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [await read_reply(reader) for _ in range(n)]
    raise ProtocolError(f"unexpected reply {line[:40]!r}")


@dataclass(frozen=True)
class _Address:
    unix: str | None
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    db: int


def _parse_url(url: str) -> _Address:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    db = int(query.get("db", ["0"])[0])
    if parts.scheme == "unix":
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return _Address(parts.path, "", 0, False, username, password, db)
    path_db = parts.path.strip("/")
    if path_db:
        db = int(path_db)
    return _Address(
        None,
        parts.hostname or "127.0.0.1",
        parts.port or 6379,
        parts.scheme == "rediss",
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        db,
    )


class RespConnection:
    """One connection that sends a command and reads its reply, one at a time. ``commit_script``:
    load :data:`COMMIT_SCRIPT` on connecting (the edge's writer); ``buffer``: bytes read ahead."""

    def __init__(self, url: str, timeout: float, *, commit_script: bool = True, buffer: int = 1 << 16) -> None:
        self.address = _parse_url(url)
        self.timeout = timeout
        self.commit_script = commit_script
        self.buffer = buffer
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        try:
            await self._open()
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        a = self.address
        if a.unix is not None:
            opened = asyncio.open_unix_connection(a.unix, limit=self.buffer)
        else:
            tls = ssl.create_default_context() if a.tls else None
            opened = asyncio.open_connection(a.host, a.port, ssl=tls, limit=self.buffer)
        self._reader, self._writer = await asyncio.wait_for(opened, self.timeout)
        if a.password is not None:
            auth = (
                [b"AUTH", a.password.encode()]
                if a.username is None
                else [b"AUTH", a.username.encode(), a.password.encode()]
            )
            await self._expect_ok(auth)
        if a.db:
            await self._expect_ok([b"SELECT", str(a.db).encode()])
        if self.commit_script:
            await self._roundtrip(encode_command([b"SCRIPT", b"LOAD", COMMIT_SCRIPT.encode()]))

    async def _expect_ok(self, args: list[bytes]) -> None:
        reply = await self._roundtrip(encode_command(args))
        if isinstance(reply, ReplyError):
            raise ConnectionError(f"Redis refused {args[0].decode()}: {reply}")

    async def _roundtrip(self, payload: bytes) -> Any:
        assert self._reader is not None and self._writer is not None
        self._writer.write(payload)
        return await asyncio.wait_for(read_reply(self._reader), self.timeout)

    async def call(self, payload: bytes) -> Any:
        """Sends one encoded command and returns its reply (a :class:`ReplyError` for an error).
        Raises ``OSError``/``TimeoutError``/``EOFError`` when the connection fails; it is closed then."""
        try:
            if self._writer is None:
                await self.open()
            return await self._roundtrip(payload)
        except BaseException:
            self.close()
            raise

    async def call_raw(self, payload: bytes, feed: Callable[[bytes], bool], timeout: float) -> None:
        """Sends one encoded command and hands its reply's bytes to ``feed`` as they arrive, until
        ``feed`` says the reply is complete: no Python object per element of the reply. Raises
        like :meth:`call`; the connection is closed then (a reply read half way cannot go on)."""
        try:
            if self._writer is None:
                await self.open()
            assert self._reader is not None and self._writer is not None
            self._writer.write(payload)
            async with asyncio.timeout(timeout):
                while True:
                    data = await self._reader.read(self.buffer)
                    if not data:
                        raise EOFError("Redis closed the connection")
                    if feed(data):
                        return
        except BaseException:
            self.close()
            raise

    def write(self, payload: bytes) -> None:
        """Sends without waiting; pair with :meth:`read`, in order."""
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(payload)

    async def read(self) -> Any:
        if self._reader is None:
            raise ConnectionError("not connected")
        return await read_reply(self._reader)

    def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()


async def cluster_commit(client: AnyRedis, args: Sequence[str | bytes]) -> Any:
    """:data:`COMMIT_SCRIPT` through a Redis Cluster client. A node that has not seen the script
    (a new or restarted primary, a failover) answers NOSCRIPT: load it everywhere, then retry."""
    try:
        return await client.evalsha(COMMIT_SHA, 2, STREAM_KEY, COMMITTED_KEY, *args)
    except NoScriptError:
        await client.script_load(COMMIT_SCRIPT)
        return await client.evalsha(COMMIT_SHA, 2, STREAM_KEY, COMMITTED_KEY, *args)


class BatchTransport:
    """Commits tagged batches with :data:`COMMIT_SCRIPT`. Returns the number of events added,
    or -1 when the tag was already committed."""

    def __init__(self, url: str, timeout: float, cluster_client: AnyRedis | None = None) -> None:
        self._cluster = cluster_client if is_cluster_url(url) else None
        self._conn = None if self._cluster is not None else RespConnection(url, timeout)
        self.timeout = timeout

    async def commit(self, writer: str, n: int, events: Sequence[bytes]) -> int:
        if self._cluster is not None:
            args = [writer.encode(), str(n).encode(), *events]
            result = await asyncio.wait_for(cluster_commit(self._cluster, args), self.timeout)
            return int(result)
        assert self._conn is not None
        payload = encode_command(
            [b"EVALSHA", COMMIT_SHA.encode(), b"2", STREAM_KEY.encode(), COMMITTED_KEY.encode(),
             writer.encode(), b"%d" % n, *events]
        )  # fmt: skip
        reply = await self._conn.call(payload)
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            self._conn.close()  # reconnecting loads the script
            reply = await self._conn.call(payload)
        if isinstance(reply, ReplyError):
            raise reply
        return int(reply)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# ---------------------------------------------------------------------------------------------
# The spool


class EventSpool:
    """Append-only files of events that Redis could not take, one active file per writer process.

    Line format: ``<tag>\\t<event JSON>\\n`` where the tag is ``writer:n`` for a batch whose outcome
    was unknown, empty otherwise. A file is ``spool-<id>.jsonl`` while a writer appends to it
    (holding an exclusive ``flock``), and ``replay-<id>.jsonl`` once handed over for replay.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._fd: int | None = None
        self.pending = 0

    @property
    def active_path(self) -> Path:
        return self.dir / f"spool-{self._id}.jsonl"

    def append(self, events: Sequence[bytes], tag: str = "") -> None:
        """Appends and fsyncs. Raises ``OSError`` when the disk refuses."""
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.active_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        prefix = tag.encode() + b"\t"
        os.write(self._fd, b"".join(prefix + e + b"\n" for e in events))
        os.fsync(self._fd)
        self.pending += len(events)

    def rotate(self) -> None:
        """Hands the active file over for replay; the next append starts a new one."""
        if self._fd is None:
            return
        path = self.active_path
        path.rename(self.dir / f"replay-{self._id}.jsonl")
        os.close(self._fd)
        self._fd = None
        self._id = f"{os.getpid()}-{secrets.token_hex(4)}"

    def replayable(self) -> list[Path]:
        """Replay files, plus active files whose writer is gone (adopted by renaming)."""
        if not self.dir.is_dir():
            return []
        for path in self.dir.glob("spool-*.jsonl"):
            if path == self.active_path and self._fd is not None:
                continue
            with _try_lock(path) as locked:
                if locked:
                    with contextlib.suppress(FileNotFoundError):
                        path.rename(path.with_name("replay-" + path.name.removeprefix("spool-")))
        return sorted(self.dir.glob("replay-*.jsonl"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def _try_lock(path: Path) -> Any:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)


def _replay_batches(path: Path) -> list[tuple[str, int, list[bytes]]]:
    """The tagged batches of a replay file, in order. A torn last line (a crash mid-write) is
    dropped: its batch was never acknowledged to anyone."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]
    name = "replay:" + path.name.removeprefix("replay-").removesuffix(".jsonl")
    batches: list[tuple[str, int, list[bytes]]] = []
    chunk: list[bytes] = []
    chunk_no = 0
    current_tag: bytes | None = None
    for line in lines:
        tag, sep, event = line.partition(b"\t")
        if not sep or not event:
            continue
        if tag:
            if chunk:
                batches.append((name, chunk_no, chunk))
                chunk, chunk_no = [], chunk_no + 1
            writer, _, n = tag.decode().rpartition(":")
            if current_tag == tag:
                batches[-1][2].append(event)
            else:
                batches.append((writer, int(n), [event]))
            current_tag = tag
            continue
        current_tag = None
        chunk.append(event)
        if len(chunk) >= REPLAY_CHUNK:
            batches.append((name, chunk_no, chunk))
            chunk, chunk_no = [], chunk_no + 1
    if chunk:
        batches.append((name, chunk_no, chunk))
    return batches


# ---------------------------------------------------------------------------------------------
# The writer


class EventWriter:
    """Group commit with pipelining. :meth:`submit` queues an event and returns its future, which
    resolves to True once Redis (or, while Redis is down, the spool) holds it, False if neither
    could. Once per event-loop turn, everything queued goes out as one batch; up to
    ``max_inflight`` batches are on the wire at once on one raw connection, and a reader task
    matches the replies to them in order (Redis answers one connection's commands in order)."""

    def __init__(
        self,
        url: str,
        spool: EventSpool,
        *,
        timeout: float = 2.0,
        retry_interval: float = 0.5,
        max_inflight: int = 4,
        cluster_client: AnyRedis | None = None,
    ) -> None:
        self.url = url
        self.spool = spool
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._cluster_client = cluster_client if is_cluster_url(url) else None
        # The cluster path goes through redis-py, one batch at a time.
        self.max_inflight = 1 if self._cluster_client is not None else max_inflight
        self._writer_id = self._new_writer_id()
        self._n = 0
        self._events: list[bytes] = []
        self._waiters: list[asyncio.Future[bool]] = []
        self._scheduled = False
        self._inflight: collections.deque[tuple[int, list[bytes], list[asyncio.Future[bool]]]] = collections.deque()
        self._conn: RespConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sent = asyncio.Event()
        self._down_until = 0.0
        self._replay_task: asyncio.Task[None] | None = None
        self._replay_wanted = True
        self._closing = False
        self.up = False
        # Figures for /metrics and /healthz.
        self.committed = 0
        self.spooled = 0
        self.replayed = 0
        self.batches = 0
        self.failures = 0

    @staticmethod
    def _new_writer_id() -> str:
        return f"{os.getpid()}-{secrets.token_hex(6)}"

    def start(self) -> None:
        """Connects in the background; events submitted meanwhile wait for it."""
        self._schedule()

    def submit(self, event: bytes) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._events.append(event)
        self._waiters.append(future)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return future

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    # -- sending -------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._scheduled = False
        if not self._events and not self._replay_wanted:
            return
        if self._conn is None:
            if time.monotonic() < self._down_until:
                self._spool_pending()
            elif self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(self._connect(), name="shortcore-events")
            return
        if not self._events or len(self._inflight) >= self.max_inflight:
            return  # the reader flushes again when a reply frees a slot
        events, waiters = self._events, self._waiters
        self._events, self._waiters = [], []
        self._n += 1
        self.batches += 1
        self._inflight.append((self._n, events, waiters))
        if self._cluster_client is not None:
            self._sent.set()
            return
        payload = encode_command(
            [b"EVALSHA", COMMIT_SHA.encode(), b"2", STREAM_KEY.encode(), COMMITTED_KEY.encode(),
             self._writer_id.encode(), b"%d" % self._n, *events]
        )  # fmt: skip
        try:
            self._conn.write(payload)
        except (OSError, RuntimeError) as exc:
            self._fail(exc)
            return
        self._sent.set()

    async def _connect(self) -> None:
        try:
            if self._cluster_client is None:
                conn = RespConnection(self.url, self.timeout)
                await conn.open()
                self._conn = conn
            else:
                await asyncio.wait_for(self._cluster_client.ping(), self.timeout)
                self._conn = RespConnection(self.url, self.timeout)  # a placeholder: "connected"
        except (OSError, EOFError, TimeoutError, ProtocolError, ReplyError, asyncio.IncompleteReadError) as exc:
            self._down(exc)
            self._spool_pending()
            return
        except Exception as exc:  # redis-py's errors on the cluster path
            self._down(exc)
            self._spool_pending()
            return
        finally:
            self._connecting = None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="shortcore-events-reader")
        if self._replay_wanted:
            self._start_replay()
        self._flush()

    async def _read(self) -> None:
        """Matches replies to in-flight batches, in order, until the connection fails."""
        conn = self._conn
        assert conn is not None
        try:
            while True:
                if not self._inflight:
                    self._sent.clear()
                    await self._sent.wait()
                    continue
                n, events, waiters = self._inflight[0]
                async with asyncio.timeout(self.timeout):
                    if self._cluster_client is not None:
                        reply = await cluster_commit(self._cluster_client, [self._writer_id, str(n), *events])
                    else:
                        reply = await conn.read()
                if isinstance(reply, ReplyError):
                    raise reply
                self._inflight.popleft()
                self.committed += len(events)
                if not self.up:
                    self.up = True
                    log.info("event stream reachable")
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(True)
                if self._replay_wanted:
                    self._start_replay()
                if self._events:
                    self._flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """The connection broke: in-flight batches may or may not be in Redis. Spool each with its
        tag and go on under a new writer id, so the tag alone tells whether it was applied."""
        self._down(exc)
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._reader = None
        writer_id = self._writer_id
        self._writer_id, self._n = self._new_writer_id(), 0
        while self._inflight:
            n, events, waiters = self._inflight.popleft()
            self._resolve(waiters, self._to_spool(events, f"{writer_id}:{n}"))
        self._spool_pending()

    def _down(self, exc: BaseException) -> None:
        if self.up or self.failures == 0:
            log.warning("event stream unreachable, spooling events: %s", exc)
        self.up = False
        self.failures += 1
        self._down_until = time.monotonic() + self.retry_interval
        self._replay_wanted = True
        # Try again even if no event comes: the spool waits for the reconnection.
        asyncio.get_running_loop().call_later(self.retry_interval * 1.01, self._retry)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _retry(self) -> None:
        if not self._closing and self._conn is None:
            self._schedule()

    def _spool_pending(self) -> None:
        if self._events:
            events, waiters = self._events, self._waiters
            self._events, self._waiters = [], []
            self.batches += 1
            self._resolve(waiters, self._to_spool(events, ""))

    @staticmethod
    def _resolve(waiters: list[asyncio.Future[bool]], ok: bool) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(ok)

    def _to_spool(self, batch: list[bytes], tag: str) -> bool:
        try:
            self.spool.append(batch, tag)
        except OSError as exc:
            log.error("cannot spool %d events: %s", len(batch), exc)
            return False
        self.spooled += len(batch)
        return True

    # -- replay --------------------------------------------------------------------------------

    def _start_replay(self) -> None:
        if self._replay_task is not None and not self._replay_task.done():
            return
        self._replay_wanted = False
        self.spool.rotate()
        self._replay_task = asyncio.get_running_loop().create_task(self._replay(), name="shortcore-spool-replay")

    async def _replay(self) -> None:
        """Replays every spool file not in use, on a connection of its own."""
        transport = BatchTransport(self.url, self.timeout, self._cluster_client)
        try:
            for path in self.spool.replayable():
                with _try_lock(path) as locked:
                    if not locked:
                        continue
                    for writer, n, events in _replay_batches(path):
                        added = await transport.commit(writer, n, events)
                        if added > 0:
                            self.replayed += added
                    path.unlink()
                    log.info("replayed spool file %s", path.name)
            self.spool.pending = 0
        except Exception as exc:
            log.warning("spool replay interrupted, will retry: %s", exc)
            self._replay_wanted = True
        finally:
            transport.close()

    async def replay_now(self) -> None:
        """Hands the active spool file over and replays every spool file now (tests, start-up)."""
        self.spool.rotate()
        await self._replay()

    async def aclose(self) -> None:
        """Waits (briefly) for queued and in-flight events, then stops."""
        self._closing = True
        for _ in range(200):
            if not self._events and not self._inflight and self._connecting is None:
                break
            await asyncio.sleep(0.01)
        for task in (self._reader, self._connecting, self._replay_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._inflight or self._events:
            self._fail(ConnectionError("shutting down"))
        if self._conn is not None:
            self._conn.close()
        self.spool.close()
