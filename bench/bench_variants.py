"""What A/B variants cost, against a campaign of one text, in one run.

``variants.redirect_rps``        wrk against one uvicorn worker of ``shortcore.edge`` (as in
                                 bench_edge: server on CPU 0, wrk and Valkey on CPU 1), random
                                 tokens of a 10,000-recipient campaign with two variants (1 and
                                 2 links): decode, route, variant hash, classify, event, 302
``variants.plain_redirect_rps``  the same server and run length on a campaign of one 2-link text
``variants.redirect_ratio``      variant / plain (each the best of three runs, alternating order)
``variants.handler_per_s``       the same tokens through ``handle_redirect`` called in-process (64
                                 in flight, events to Valkey, no HTTP server or wrk): the edge's own
                                 work, far less noisy than wrk on this shared machine
``variants.plain_handler_per_s`` the same for the one-text campaign; ``variants.handler_ratio``
                                 (each the best of eight batches of 2,000, alternating)
``variants.create_per_s``        recipients per second creating a campaign through the control API
                                 (its own uvicorn process, CSV upload over loopback, then every
                                 message downloaded), with the two variants; 50,000 recipients
                                 (200,000 full)
``variants.plain_create_per_s``  the same server and list with one 2-link text; best of two runs
                                 each, alternating; ``variants.create_ratio``
``variants.stats_s``             seconds for ``GET …/stats`` figures (``campaign_stats``) of a
                                 campaign of 1,000,000 messages (200,000 quick) and 50,000 clicks in
                                 chDB, with two variants (joined to the messages for the variant);
                                 best of three, after one warm-up
``variants.plain_stats_s``       the same campaign without variants; ``variants.stats_ratio``
``variants.render_per_s``        messages rendered per second by ``MessageBatches`` with two variants
                                 (assignment, tokens, two templates, in Rust into RowBinary), 20,000
                                 a batch
``variants.plain_render_per_s``  ``MessageBatches`` rendering the same recipients with one text; both
                                 sides include reading the list; ``variants.render_ratio``
``variants.assign_per_s``        ``VariantAssigner.variant_of`` calls per second, one recipient a call
                                 as the edge makes them (Rust, keyed Blake2b)
``variants.python_assign_per_s`` the same assignment in Python (hashlib's keyed blake2b from a copied
                                 state, then bisect: what the edge called before); both best of three
                                 runs; ``variants.assign_ratio`` Rust / Python
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_campaign import _csv  # noqa: E402
from bench_edge import LOAD_CPU, SECRET, UA, _free_port, _server, _stop, _wrk, _wrk_script  # noqa: E402

from common import rate, require_release_build, wait_until_answering  # noqa: E402

RECIPIENTS = 10_000
TEXT_A = "Sale: https://shop.example/a?x=1"
TEXT_B = "20% off today: https://shop.example/b and the stores www.shop.example/s"


async def _setup(url: str) -> tuple[list[str], list[str]]:
    """Registers both campaigns; returns the paths of every sent token of each."""
    from shortcore import routing
    from shortcore.routing import VariantRoute
    from shortcore.store import connect
    from shortcore.tokens import TokenCodec
    from shortcore.variants import VariantAssigner, new_seed

    redis = connect(url)
    common = {"account": "bench", "domain": "127.0.0.1", "recipients": RECIPIENTS, "sent_at": time.time() - 3600}
    utm = {"source": "sms", "medium": "sms", "campaign": "bench"}
    plain = await routing.register_campaign(
        redis, id="plain", destinations=["https://shop.example/p?x=1", "https://shop.example/q#top"], utm=utm, **common
    )
    seed = new_seed()
    routes = (
        VariantRoute("A", 1.0, ("https://shop.example/a?x=1",)),
        VariantRoute("B", 1.0, ("https://shop.example/b", "https://www.shop.example/s")),
    )
    ab = await routing.register_campaign(
        redis,
        id="ab",
        destinations=list(routes[0].destinations),
        utm=utm,
        variants=routes,
        variant_seed=seed,
        **common,
    )
    await redis.aclose()
    codec = TokenCodec(SECRET.encode(), 7)
    plain_paths = [f"/{t}" for t in codec.encode_range(plain.seq_start, plain.seq_count)]
    assigned = VariantAssigner(seed, [1.0, 1.0]).variants_of(0, RECIPIENTS)
    ab_paths = [
        f"/{codec.encode(ab.seq_start + r * 2 + link)}"
        for r, variant in enumerate(assigned)
        for link in range(len(routes[variant].destinations))
    ]
    return plain_paths, ab_paths


async def _handler_rates(url: str, data_dir: Path, plain: list[str], ab: list[str]) -> tuple[float, float]:
    from shortcore.config import Settings
    from shortcore.edge import EdgeApp, handle_redirect

    headers = [(b"user-agent", UA.encode()), (b"accept", b"text/html"), (b"accept-language", b"en-GB")]
    app = EdgeApp(Settings(data_dir=data_dir, redis_url=url, secret=SECRET))
    async with app.running() as state:

        async def send(message: dict[str, object]) -> None:
            return None

        async def batch(paths: list[str], n: int = 2000) -> float:
            slots = asyncio.Semaphore(64)

            async def one(path: str) -> None:
                scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
                         "client": ("203.0.113.5", 4321), "headers": headers}  # fmt: skip
                async with slots:
                    await handle_redirect(state, scope, send)

            started = time.perf_counter()
            await asyncio.gather(*(one(paths[i % len(paths)]) for i in range(n)))
            return n / (time.perf_counter() - started)

        await batch(plain)
        await batch(ab)
        best = {"plain": 0.0, "ab": 0.0}
        for i in range(8):
            order = (("plain", plain), ("ab", ab)) if i % 2 == 0 else (("ab", ab), ("plain", plain))
            for name, paths in order:
                best[name] = max(best[name], await batch(paths))
    return best["plain"], best["ab"]


def _render(quick: bool) -> dict[str, float]:
    from shortcore.campaigns import CampaignRange, MessageBatches, prepare_template
    from shortcore.recipients import RecipientList
    from shortcore.tokens import TokenCodec
    from shortcore.variants import VariantPlan, VariantSpec

    batch = 20_000
    records = [{"phone": f"+4915100{i:06d}"} for i in range(batch)]
    codec = TokenCodec(SECRET.encode(), 7)
    where = CampaignRange("cmp_bench", "bench", "https://ul.example", 0)
    template = prepare_template(TEXT_B)
    plan = VariantPlan.prepare([VariantSpec("A", TEXT_A, 1), VariantSpec("B", TEXT_B, 1)])
    seconds = 0.5 if quick else 2.0

    def read() -> RecipientList:
        # Both sides read the same list into a spool first, as campaign creation does.
        recipients = RecipientList("DE")
        recipients.read_records(records)
        return recipients

    def plain() -> None:
        MessageBatches(template, codec, where).encode(read(), batch)

    def ab() -> None:
        plan.batches(codec, where).encode(read(), batch)

    # Alternating, so a noisy neighbour hits both alike.
    plain_rate = ab_rate = 0.0
    for _ in range(2):
        plain_rate = max(plain_rate, rate(plain, batch, seconds))
        ab_rate = max(ab_rate, rate(ab, batch, seconds))
    return {
        "variants.plain_render_per_s": plain_rate,
        "variants.render_per_s": ab_rate,
        "variants.render_ratio": ab_rate / plain_rate,
    }


def _python_variant_of(seed: str, weights: list[float]) -> Callable[[int], int]:
    """The assignment as the edge computed it in Python before it moved to Rust (the baseline)."""
    space = 2**64
    total = math.fsum(weights)
    running, bounds = 0.0, []
    for weight in weights[:-1]:
        running += weight
        bounds.append(min(space, round(running / total * space)))
    bounds.append(space)
    base = hashlib.blake2b(key=bytes.fromhex(seed), digest_size=8)

    def variant_of(recipient: int) -> int:
        hasher = base.copy()
        hasher.update(recipient.to_bytes(8, "little"))
        return bisect.bisect_right(bounds, int.from_bytes(hasher.digest(), "little"))

    return variant_of


def _assign(quick: bool) -> dict[str, float]:
    from shortcore.variants import VariantAssigner, new_seed

    seed, weights, n = new_seed(), [1.0, 1.0, 2.0], 10_000
    rust_of, python_of = VariantAssigner(seed, weights).variant_of, _python_variant_of(seed, weights)
    assert [rust_of(r) for r in range(1000)] == [python_of(r) for r in range(1000)]

    def rust() -> None:
        for r in range(n):
            rust_of(r)

    def python() -> None:
        for r in range(n):
            python_of(r)

    seconds = 0.3 if quick else 1.0
    rust_rate = rate(rust, n, seconds)
    python_rate = rate(python, n, seconds)
    return {
        "variants.assign_per_s": rust_rate,
        "variants.python_assign_per_s": python_rate,
        "variants.assign_ratio": rust_rate / python_rate,
    }


def _create_rates(redis_url: str, workdir: Path, rows: int) -> tuple[float, float]:
    """Recipients/s of creating and downloading a campaign of one text and one of two variants."""
    import httpx2 as httpx
    import orjson

    from shortcore import accounts

    port = _free_port()
    env = {
        **os.environ,
        "SHORTCORE_DATA_DIR": str(workdir / "control"),
        "SHORTCORE_REDIS_URL": redis_url,
        "SHORTCORE_BASE_URL": "https://ul.example",
        "SHORTCORE_SECRET": SECRET,
        "SHORTCORE_SINK": "off",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "shortcore.control:app_from_env", "--port", str(port)]
    server = subprocess.Popen([*command, "--log-level", "warning"], env=env)
    body = _csv(rows)
    forms = {
        "plain": {"name": "plain", "text": TEXT_B},
        "ab": {"name": "ab", "variants": orjson.dumps([{"name": "A", "text": TEXT_A}, {"name": "B", "text": TEXT_B}])},
    }
    best = {"plain": 0.0, "ab": 0.0}
    try:
        key = accounts.new_api_key(redis_url, "bench", default_region="DE")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=600, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            wait_until_answering(client, server)
            # The first creation warms the server (imports, chDB tables) and is not counted.
            for run, name in enumerate(("plain", "plain", "ab", "ab", "plain")):
                started = time.perf_counter()
                created = client.post(
                    "/api/v1/campaigns", data=forms[name], files={"recipients": ("list.csv", body, "text/csv")}
                )
                created.raise_for_status()
                count = 0
                with client.stream("GET", created.json()["messages_url"]) as response:
                    for line in response.iter_lines():
                        count += bool(line)
                if count != rows:
                    raise SystemExit(f"expected {rows} messages, got {count}")
                if run:
                    best[name] = max(best[name], rows / (time.perf_counter() - started))
    finally:
        server.terminate()
        server.wait(30)
    return best["plain"], best["ab"]


def _stats_seconds(messages: int) -> tuple[float, float]:
    """In a chDB directory of its own: best seconds of the stats of a campaign of one text and of
    the same campaign with two variants. Runs in a child process (chDB: one directory a process)."""
    import datetime as dt

    import orjson

    from shortcore.analytics import DATABASE, connect, migrate
    from shortcore.stats import campaign_stats, variant_clicks

    with tempfile.TemporaryDirectory(prefix="sc-bench-stats-") as tmp:
        client = connect(f"chdb://{tmp}/clickhouse")
        migrate(client)
        columns = ["id", "account", "name", "text", "domain", "seq_start", "recipients", "links", "destinations",
                   "utm", "click_param", "sent_at", "expires_at", "created_at", "version", "variants"]  # fmt: skip
        plan = {
            "seed": "00",
            "variants": [
                {"name": n, "weight": 1, "text": "t", "destinations": [f"https://{n}.example"]} for n in ("A", "B")
            ],
        }
        now = dt.datetime.now(dt.UTC)
        for campaign, variants in (("cmp_plain", ""), ("cmp_ab", orjson.dumps(plan).decode())):
            row = [campaign, "acc", campaign, "t", "ul.example", 0, messages, 1, ["https://a.example"], {}, True,
                   None, None, now, 1, variants]  # fmt: skip
            client.insert(f"{DATABASE}.campaigns", [row], column_names=columns)
            variant = "if(number % 2 = 0, 'A', 'B')" if variants else "''"
            client.command(
                f"INSERT INTO {DATABASE}.messages (campaign_id, account, recipient_index, phone, text, created_at, "
                f"variant) SELECT '{campaign}', 'acc', number, toString(number), 't', now64(3), {variant} "
                f"FROM numbers({messages})"
            )
            # Each event with its recipient's variant, as the sink writes it: the messages' own
            # expression of the recipient index.
            recipient = f"(number * 7919) % {messages}"
            client.command(
                f"INSERT INTO {DATABASE}.events (event_id, time, type, outcome, account, campaign_id, "
                "recipient_index, link_index, class, reason, variant) SELECT generateUUIDv4(), now64(3) - number, "
                f"'click', 'ok', 'acc', '{campaign}', {recipient}, 0, if(number % 5 = 0, 'bot', 'human'), 'x', "
                f"{variant.replace('number', recipient)} FROM numbers(50000)"
            )
        # The A/B stats read the events' own variant, not the join with the messages.
        assert variant_clicks(client, "cmp_ab", from_events=True) is not None
        best = {}
        for campaign in ("cmp_plain", "cmp_ab"):
            campaign_stats(client, campaign)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                campaign_stats(client, campaign)
                times.append(time.perf_counter() - started)
            best[campaign] = min(times)
        client.close()
    return best["cmp_plain"], best["cmp_ab"]


def run(quick: bool) -> dict[str, float]:
    from shortcore.store import EmbeddedStore

    require_release_build()
    seconds = 3 if quick else 8
    figures = _render(quick) | _assign(quick)
    with tempfile.TemporaryDirectory(prefix="sc-bench-variants-") as tmp:
        directory = Path(tmp)
        with EmbeddedStore(directory / "data") as store:
            assert store._process is not None
            os.sched_setaffinity(store._process.pid, {int(LOAD_CPU)})
            plain_paths, ab_paths = asyncio.run(_setup(store.url))
            plain_handler, ab_handler = asyncio.run(
                _handler_rates(store.url, directory / "data", plain_paths, ab_paths)
            )
            (directory / "plain").mkdir()
            (directory / "ab").mkdir()
            plain_script = _wrk_script(directory / "plain", plain_paths)
            ab_script = _wrk_script(directory / "ab", ab_paths)
            env = {
                "SHORTCORE_REDIS_URL": store.url,
                "SHORTCORE_SECRET": SECRET,
                "SHORTCORE_DATA_DIR": str(directory / "data"),
                "PYTHONPATH": str(HERE),
            }
            port = _free_port()
            process = _server("shortcore.edge:create_app", port, env, factory=True)
            try:
                _wrk(port, plain_script, 1)
                _wrk(port, ab_script, 1)
                plain = ab = 0.0
                # Alternating, in both orders, so a noisy neighbour hits both alike.
                for first_plain in (True, False, True):
                    for script in (plain_script, ab_script) if first_plain else (ab_script, plain_script):
                        rps = _wrk(port, script, seconds)[0]
                        if script == plain_script:
                            plain = max(plain, rps)
                        else:
                            ab = max(ab, rps)
            finally:
                _stop(process)
    figures["variants.plain_handler_per_s"] = plain_handler
    figures["variants.handler_per_s"] = ab_handler
    figures["variants.handler_ratio"] = ab_handler / plain_handler
    with tempfile.TemporaryDirectory(prefix="sc-bench-variants-") as tmp, EmbeddedStore(Path(tmp) / "redis") as store:
        plain_create, ab_create = _create_rates(store.url, Path(tmp), 50_000 if quick else 200_000)
    out = subprocess.run(
        [sys.executable, __file__, "--stats", str(200_000 if quick else 1_000_000)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    plain_stats, ab_stats = (float(x) for x in out.split())
    figures["variants.plain_stats_s"] = plain_stats
    figures["variants.stats_s"] = ab_stats
    figures["variants.stats_ratio"] = ab_stats / plain_stats
    figures["variants.plain_create_per_s"] = plain_create
    figures["variants.create_per_s"] = ab_create
    figures["variants.create_ratio"] = ab_create / plain_create
    figures["variants.plain_redirect_rps"] = plain
    figures["variants.redirect_rps"] = ab
    figures["variants.redirect_ratio"] = ab / plain
    return figures


if __name__ == "__main__":
    import json

    if "--stats" in sys.argv:
        print(*_stats_seconds(int(sys.argv[sys.argv.index("--stats") + 1])))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
