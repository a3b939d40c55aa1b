"""Request classification: shortcore's batch path against crawlerdetect, in one run.

``classify.rust_per_s`` is ``Classifier.classify_many`` from Python (dicts in, Rust work without
the GIL, ``Classification`` objects out) over the labelled requests; ``classify.crawlerdetect_per_s``
is crawlerdetect (PyPI) ``is_crawler`` over the same user agents, one by one, as a Python service
would call it; ``classify.ratio`` is the first over the second. Each timed pass uses a fresh
detector, so crawlerdetect's per-instance result cache (1,024 entries) answers nothing it has not
computed in that pass, even on a list smaller than the cache.

``classify.accuracy`` is the share of requests whose class matches the label (human, preview,
bot), and ``classify.crawlerdetect_accuracy`` the same for crawlerdetect with "crawler => bot,
else human" (it has no preview class). Both are on ``../shared/data/ua-dev.jsonl`` when it is
beside the repository, else on the project's own sample, ``tests/data/ua-sample.jsonl``; the
per-class figures are printed when the script runs on its own.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine, rate, require_release_build

DEV_SET = ROOT.parent / "shared" / "data" / "ua-dev.jsonl"
SAMPLE = ROOT / "tests" / "data" / "ua-sample.jsonl"


def load() -> tuple[Path, list[dict[str, Any]]]:
    path = DEV_SET if DEV_SET.exists() else SAMPLE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return path, rows


def requests_of(rows: list[dict[str, Any]]) -> list[dict[str, object]]:
    keys = ("ua", "method", "headers", "seconds_since_send")
    return [{key: row[key] for key in keys if key in row} for row in rows]


def per_class(labels: list[str], predicted: list[str]) -> dict[str, tuple[int, int]]:
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for label, guess in zip(labels, predicted, strict=True):
        total[label] += 1
        right[label] += label == guess
    return {label: (right[label], total[label]) for label in sorted(total)}


def run(quick: bool) -> dict[str, float]:
    from crawlerdetect import CrawlerDetect

    from shortcore.classify import Classifier

    require_release_build()
    _, rows = load()
    requests = requests_of(rows)
    labels = [row["label"] for row in rows]
    agents = [str(row.get("ua") or "") for row in rows]
    classifier = Classifier()
    detector = CrawlerDetect()
    seconds = 0.3 if quick else 1.0
    # crawlerdetect is slow: time it on a slice in quick mode.
    slice_ = agents[: 3000 if quick else len(agents)]

    ours = rate(lambda: classifier.classify_many(requests), len(requests), seconds)
    # A fresh detector per pass: its per-instance result cache would otherwise answer every user
    # agent of a list smaller than the cache (the project's own sample has 419) from memory. The
    # compiled patterns are cached per module, so making one costs next to nothing.
    theirs = rate(
        lambda: [d.is_crawler(ua) for d in (CrawlerDetect(),) for ua in slice_], len(slice_), seconds,
        repeats=1 if quick else 2,
    )  # fmt: skip

    predicted = [c.label for c in classifier.classify_many(requests)]
    baseline = ["bot" if ua and detector.is_crawler(ua) else "human" for ua in agents]
    accuracy = sum(map(str.__eq__, labels, predicted)) / len(labels)
    baseline_accuracy = sum(map(str.__eq__, labels, baseline)) / len(labels)
    return {
        "classify.rust_per_s": ours,
        "classify.crawlerdetect_per_s": theirs,
        "classify.ratio": ours / theirs,
        "classify.accuracy": accuracy,
        "classify.crawlerdetect_accuracy": baseline_accuracy,
    }


def main() -> None:
    from crawlerdetect import CrawlerDetect

    from shortcore.classify import Classifier

    quick = "--quick" in sys.argv
    print(machine())
    path, rows = load()
    print(f"labelled requests: {path} ({len(rows)})")
    for key, value in run(quick).items():
        print(f"{key:34} {value:>16,.4f}")
    labels = [row["label"] for row in rows]
    ours = [c.label for c in Classifier().classify_many(requests_of(rows))]
    detector = CrawlerDetect()
    theirs = ["bot" if row.get("ua") and detector.is_crawler(row["ua"]) else "human" for row in rows]
    for name, predicted in (("shortcore", ours), ("crawlerdetect", theirs)):
        scores = per_class(labels, predicted).items()
        figures = ", ".join(f"{label} {right}/{total} = {right / total:.2%}" for label, (right, total) in scores)
        print(f"{name:14} {figures}")


if __name__ == "__main__":
    main()
