"""Runs every benchmark of the suite and writes bench/results/latest.json and latest.md.

    python bench/run.py --quick    # under 3 minutes: smaller sizes, same keys
    python bench/run.py --full

Each bench module exposes ``run(quick) -> dict[str, float]`` and measures its own baseline in the
same run, so a figure and its ratio are always from one sitting of this noisy, shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine, require_release_build  # noqa: E402

# Order matters little; the edge bench is the slowest.
# The keys every run must write (issue 8); a module may add more.
REQUIRED_KEYS = (
    "redirect.tracked_rps", "redirect.ceiling_rps", "redirect.ratio", "redirect.p99_ms",
    "tokens.rust_per_s", "tokens.sqids_per_s", "tokens.ratio",
    "classify.rust_per_s", "classify.crawlerdetect_per_s", "classify.ratio", "classify.accuracy",
    "classify.crawlerdetect_accuracy",
    "campaign.recipients_per_s", "campaign.peak_rss_mb",
    "sink.events_per_s", "redis.bytes_per_link", "webhooks.deliveries_per_s",
)  # fmt: skip

MODULES = [
    "bench_tokens", "bench_classify", "bench_campaign", "bench_sink", "bench_webhooks", "bench_variants", "bench_edge",
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="small sizes, same keys (CI checks the keys)")
    mode.add_argument("--full", action="store_true", help="the sizes the issues name")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where latest.json and latest.md go")
    parser.add_argument(
        "--check", action="store_true", help="fail unless every required key was written as a number (CI)"
    )
    args = parser.parse_args()
    require_release_build()

    figures: dict[str, float] = {}
    timings: dict[str, float] = {}
    for name in MODULES:
        if not (HERE / f"{name}.py").exists():
            continue
        module = importlib.import_module(name)
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        result = module.run(quick=args.quick)
        timings[name] = round(time.perf_counter() - started, 1)
        for key, value in result.items():
            print(f"   {key:34} {value:>16,.3f}", flush=True)
        figures.update(result)

    record = {"mode": "quick" if args.quick else "full", "machine": machine(), "seconds": timings, "figures": figures}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (args.out / "latest.md").write_text(markdown(record))
    print(f"wrote {args.out / 'latest.json'} and latest.md")
    if args.check:
        missing = [key for key in REQUIRED_KEYS if not isinstance(figures.get(key), int | float)]
        if shutil.which("nginx") and "redirect.nginx_rps" not in figures:
            missing.append("redirect.nginx_rps")
        if missing:
            print(f"missing figures: {', '.join(missing)}", file=sys.stderr)
            return 1
        print(f"check: all {len(REQUIRED_KEYS)} required figures written")
    return 0


def markdown(record: dict[str, object]) -> str:
    info = record["machine"]
    assert isinstance(info, dict)
    figures = record["figures"]
    assert isinstance(figures, dict)
    lines = [
        f"Benchmark run ({record['mode']}), {info['date']}, {info['cores']} cores, {info['cpu']}, "
        f"Python {info['python']}, {info['rustc']}",
        "",
        "| figure | value |",
        "|---|---:|",
    ]
    lines += [f"| `{key}` | {value:,.3f} |" for key, value in sorted(figures.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
