"""The classifier and user-agent parser from Python, and ``shortcore classify``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shortcore import InvalidArgumentError
from shortcore.classify import CLASSIFIER_HEADERS, Classification, Classifier, UserAgent, parse_user_agent

HERE = Path(__file__).parent
SAMPLE = HERE / "data" / "ua-sample.jsonl"
# Beside the repository in CI and on the development machines; absent in a bare clone.
DEV_SET = HERE.parent.parent / "shared" / "data" / "ua-dev.jsonl"

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
BROWSER_HEADERS = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en-GB,en;q=0.9"}

clf = Classifier()


def test_api_shape() -> None:
    c = clf.classify(IPHONE)
    assert isinstance(c, Classification)
    assert (c.label, c.reason) == ("human", "human")
    assert (c.browser, c.browser_version, c.os, c.os_version, c.device) == (
        "Mobile Safari",
        "17",
        "iOS",
        "17",
        "mobile",
    )
    assert "user-agent" in CLASSIFIER_HEADERS and "sec-purpose" in CLASSIFIER_HEADERS
    assert all(name == name.lower() for name in CLASSIFIER_HEADERS)
    ua = parse_user_agent(CHROME)
    assert isinstance(ua, UserAgent)
    assert (ua.browser, ua.browser_version, ua.os, ua.os_version, ua.device) == (
        "Chrome",
        "126",
        "Windows",
        "10",
        "desktop",
    )
    assert clf.too_soon_seconds == 2.0


@pytest.mark.parametrize(
    ("ua", "label", "reason"),
    [
        (IPHONE, "human", "human"),
        ("WhatsApp/2.23.20.0 A", "preview", "preview:whatsapp"),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "preview", "preview:facebook"),
        ("python-requests/2.32.3", "bot", "bot:ua:python-requests"),
        ("", "bot", "bot:no-ua"),
        (None, "bot", "bot:no-ua"),
    ],
)
def test_user_agents(ua: str | None, label: str, reason: str) -> None:
    c = clf.classify(ua)
    assert (c.label, c.reason) == (label, reason)


def test_methods_headers_timing() -> None:
    assert clf.classify(CHROME, method="HEAD").reason == "bot:head"
    assert clf.classify(CHROME, headers={"Sec-Purpose": "prefetch"}).reason == "bot:prefetch"
    assert clf.classify(CHROME, headers={"X-MOZ": "prefetch"}).reason == "bot:prefetch"
    assert clf.classify(CHROME, headers=BROWSER_HEADERS, seconds_since_send=0.3).reason == "bot:too-soon"
    assert clf.classify(CHROME, headers=BROWSER_HEADERS, seconds_since_send=60).reason == "human"
    assert Classifier(too_soon_seconds=120).classify(CHROME, seconds_since_send=60).reason == "bot:too-soon"


def test_asgi_raw_headers() -> None:
    raw = [(b"host", b"ul.example"), (b"user-agent", CHROME.encode()), (b"accept", b"text/html")]
    assert clf.classify(None, headers=raw).reason == "human"
    assert clf.classify(None, headers=[*raw, (b"sec-purpose", b"prefetch")]).reason == "bot:prefetch"
    assert clf.classify(None, headers=[(b"host", b"ul.example"), (b"user-agent", CHROME.encode())]).label == "bot"


def test_batch_matches_single() -> None:
    requests: list[Mapping[str, object]] = [
        {"ua": IPHONE},
        {"ua": CHROME, "method": "HEAD"},
        {"ua": CHROME, "headers": BROWSER_HEADERS, "seconds_since_send": 0.1},
        {"ua": "WhatsApp/2.23.20.0 A", "ip": "203.0.113.9"},
        {"headers": [(b"user-agent", b"curl/8.5.0")]},
        {},
    ]
    batch = clf.classify_many(requests)
    single = [
        clf.classify(
            r.get("ua"),  # type: ignore[arg-type]
            method=r.get("method", "GET"),  # type: ignore[arg-type]
            headers=r.get("headers"),  # type: ignore[arg-type]
            seconds_since_send=r.get("seconds_since_send"),  # type: ignore[arg-type]
        )
        for r in requests
    ]
    assert batch == single
    assert [c.reason for c in batch] == [
        "human",
        "bot:head",
        "bot:too-soon",
        "preview:whatsapp",
        "bot:ua:curl",
        "bot:no-ua",
    ]
    assert clf.classify_many([]) == []


def test_bad_input() -> None:
    assert clf.classify(b"Mozilla/5.0 \xff\xfe (iPhone; CPU iPhone OS 17_0 like Mac OS X)").label in {"human", "bot"}
    assert clf.classify("x" * 1_000_000).label == "bot"
    assert clf.classify("Mozilla/5.0 (" * 100_000).label in {"human", "bot"}
    assert clf.classify("\udcff surrogate").label == "bot"
    for bad in [
        lambda: clf.classify(5),  # type: ignore[arg-type]
        lambda: clf.classify(IPHONE, headers=5),  # type: ignore[arg-type]
        lambda: clf.classify(IPHONE, headers={"accept": 5}),  # type: ignore[dict-item]
        lambda: clf.classify(IPHONE, headers=[(b"accept",)]),  # type: ignore[list-item]
        lambda: clf.classify(IPHONE, seconds_since_send="soon"),  # type: ignore[arg-type]
        lambda: clf.classify_many([5]),  # type: ignore[list-item]
        lambda: clf.classify_many(5),  # type: ignore[arg-type]
        lambda: Classifier(-1.0),
        lambda: Classifier(float("nan")),
    ]:
        with pytest.raises(InvalidArgumentError):
            bad()


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "shortcore", "classify", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_cli_lines_in_order_with_bad_lines() -> None:
    lines = [
        json.dumps({"ua": IPHONE}),
        "not json",
        "",
        json.dumps({"ua": CHROME, "headers": {"Accept": 5}}),
        json.dumps({"no": "ua"}),
        json.dumps({"ua": "WhatsApp/2.23.20.0 A", "method": "GET", "seconds_since_send": 9}),
        json.dumps({"ua": CHROME, "method": "HEAD"}),
    ]
    done = run_cli(stdin=("\n".join(lines) + "\n").encode() + b'{"ua": "\xff\xfe"}\n')
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == len(lines) + 1
    assert out[0] == {"class": "human", "reason": "human", "browser": "Mobile Safari", "os": "iOS", "device": "mobile"}
    assert [set(o) for o in out[1:5]] == [{"error"}] * 4
    assert out[5]["class"] == "preview"
    assert out[6]["reason"] == "bot:head"
    assert out[7]["class"] == "bot"
    assert b"Traceback" not in done.stderr


def test_cli_empty_input_and_file(tmp_path: Path) -> None:
    done = run_cli()
    assert (done.returncode, done.stdout) == (0, b"")
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps({"ua": "curl/8.5.0"}) + "\n")
    done = run_cli(str(path))
    assert json.loads(done.stdout)["reason"] == "bot:ua:curl"
    missing = run_cli(str(tmp_path / "missing.jsonl"))
    assert missing.returncode != 0 and b"Traceback" not in missing.stderr


# Must match the targets of rust/shortcore/tests/classify.rs and issue 3.
TARGETS = {"human": 0.995, "bot": 0.98, "preview": 0.95}


def accuracy_by_class(path: Path) -> dict[str, tuple[int, int, list[str]]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keys = ("ua", "method", "headers", "seconds_since_send")
    results = clf.classify_many([{k: row[k] for k in keys if k in row} for row in rows])
    scores: dict[str, tuple[int, int, list[str]]] = {}
    for row, result in zip(rows, results, strict=True):
        right, total, misses = scores.get(row["label"], (0, 0, []))
        if result.label == row["label"]:
            right += 1
        else:
            misses.append(f"{row['label']} -> {result.label} ({result.reason}): {row['ua']}")
        scores[row["label"]] = (right, total + 1, misses)
    return scores


def assert_targets(path: Path) -> None:
    scores = accuracy_by_class(path)
    for label, target in TARGETS.items():
        right, total, misses = scores[label]
        assert right / total >= target, f"{label}: {right}/{total} below {target}\n" + "\n".join(misses[:20])


def test_accuracy_on_the_project_sample() -> None:
    assert_targets(SAMPLE)


@pytest.mark.skipif(not DEV_SET.exists(), reason=f"{DEV_SET} is absent (it lives beside the repository)")
def test_accuracy_on_the_dev_set() -> None:
    assert_targets(DEV_SET)


def test_in_app_browsers_are_people_and_named() -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    in_app = [row for row in rows if any(tag.startswith("in_app:") for tag in row.get("tags", []))]
    assert len(in_app) > 50
    for row in in_app:
        c = clf.classify(row["ua"])
        assert c.label == "human", row["ua"]
        assert c.device in {"mobile", "tablet"}, row["ua"]


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (IPHONE, ("Mobile Safari", "17", "iOS", "17", "mobile")),
        (CHROME, ("Chrome", "126", "Windows", "10", "desktop")),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0.0.0 Safari/537.36",
            ("Chrome", "124", "Android", "13", "tablet"),
        ),
        (
            "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
            ("Firefox", "115", "Windows", "7", "desktop"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            ("Edge", "131", "macOS", "10", "desktop"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 "
            "Chrome/122.0.0.0 Mobile Safari/537.36",
            ("Samsung Internet", "26", "Android", "14", "mobile"),
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108;FBBV/590000000;FBDV/iPhone14,7]",
            ("Facebook", "450", "iOS", "17", "mobile"),
        ),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", (None, None, None, None, "bot")),
        ("", (None, None, None, None, "other")),
    ],
)
def test_parse_user_agent(ua: str, expected: tuple[str | None, ...]) -> None:
    parsed = parse_user_agent(ua)
    assert (parsed.browser, parsed.browser_version, parsed.os, parsed.os_version, parsed.device) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.none()), st.sampled_from(["GET", "HEAD", "", "POST", "gEt"]))
def test_never_raises_for_any_user_agent(ua: str | bytes | None, method: str) -> None:
    c = clf.classify(ua, method=method, headers=[(b"accept", b"*/*")])
    assert c.label in {"human", "preview", "bot"}
    assert c.device in {"mobile", "tablet", "desktop", "bot", "other"}
    assert c.reason == "human" or c.reason.startswith(f"{c.label}:")
