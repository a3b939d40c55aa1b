from __future__ import annotations

import subprocess
import sys


def shortcore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shortcore", *args], capture_output=True, text=True, timeout=60)


def test_sms_reports_links_and_segments() -> None:
    link = "https://shop.example/a-very-long-path/that/costs/characters?x=1"
    text = f"Sale: {link} now"
    result = shortcore("sms", text)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"link [6:{6 + len(link)}] {link}"
    assert lines[1] == f"before: GSM-7, {len(text)} characters, {len(text)} units, 1 segment(s)"
    after = len("Sale: https://ul.example/AAAAAAA now")
    assert lines[2] == f"after:  GSM-7, {after} characters, {after} units, 1 segment(s)"
    assert lines[3].startswith("Sale: https://ul.example/") and lines[3].endswith(" now")


def test_sms_drop_scheme() -> None:
    result = shortcore("sms", "Go https://a.example/x", "--scheme", "drop", "--base-url", "https://s.example/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Go s.example/")


def test_sms_bad_input_is_a_clear_error() -> None:
    result = shortcore("sms", "x", "--token-length", "99")
    assert result.returncode == 2
    assert "token length must be between 6 and 12" in result.stderr
    assert "Traceback" not in result.stderr
    result = shortcore("sms", "x", "--scheme", "sometimes")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_help_and_version() -> None:
    assert shortcore().returncode == 2
    assert "sms" in shortcore("--help").stdout
    version = shortcore("--version")
    assert version.returncode == 0 and version.stdout.strip()
