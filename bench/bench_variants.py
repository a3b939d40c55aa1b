"""What A/B variants cost, against a campaign of one text, in one run.

``variants.redirect_rps``        wrk against one uvicorn worker of ``shortcore.edge`` (as in
                                 bench_edge: server on CPU 0, wrk and Valkey on CPU 1), random
                                 tokens of a 10,000-recipient campaign with two variants (1 and
                                 2 links): decode, route, variant hash, classify, event, 302
``variants.plain_redirect_rps``  the same server and run length on a campaign of one 2-link text
``variants.redirect_ratio``      variant / plain (each the best of three runs, alternating order)
``variants.render_per_s``        messages rendered per second by ``VariantMessageBatches``
                                 (assignment, tokens, two templates), 20,000 a batch
``variants.plain_render_per_s``  ``MessageBatches`` rendering the same recipients with one text
``variants.render_ratio``        variant / plain
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_edge import LOAD_CPU, SECRET, _free_port, _server, _stop, _wrk, _wrk_script  # noqa: E402

from common import rate, require_release_build  # noqa: E402

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


def _render(quick: bool) -> dict[str, float]:
    from shortcore.campaigns import CampaignRange, MessageBatches, prepare_template
    from shortcore.recipients import Recipient
    from shortcore.tokens import TokenCodec
    from shortcore.variants import VariantPlan, VariantSpec

    batch = 20_000
    recipients = [Recipient(i + 2, f"+4915100{i:06d}") for i in range(batch)]
    codec = TokenCodec(SECRET.encode(), 7)
    where = CampaignRange("cmp_bench", "bench", "https://ul.example", 0)
    template = prepare_template(TEXT_B)
    plan = VariantPlan.prepare([VariantSpec("A", TEXT_A, 1), VariantSpec("B", TEXT_B, 1)])
    seconds = 0.5 if quick else 2.0
    plain = rate(lambda: MessageBatches(template, codec, where).render(recipients, False), batch, seconds)
    ab = rate(lambda: plan.batches(codec, where).render(recipients, False), batch, seconds)
    return {"variants.plain_render_per_s": plain, "variants.render_per_s": ab, "variants.render_ratio": ab / plain}


def run(quick: bool) -> dict[str, float]:
    from shortcore.store import EmbeddedStore

    require_release_build()
    seconds = 3 if quick else 8
    figures = _render(quick)
    with tempfile.TemporaryDirectory(prefix="sc-bench-variants-") as tmp:
        directory = Path(tmp)
        with EmbeddedStore(directory / "data") as store:
            assert store._process is not None
            os.sched_setaffinity(store._process.pid, {int(LOAD_CPU)})
            plain_paths, ab_paths = asyncio.run(_setup(store.url))
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
    figures["variants.plain_redirect_rps"] = plain
    figures["variants.redirect_rps"] = ab
    figures["variants.redirect_ratio"] = ab / plain
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=2))
