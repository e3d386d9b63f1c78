"""``Retry-After`` in both forms, read by one function for every caller."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connections.retry_after import MAX_WAIT, parse_retry_after

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Sun, 29 Nov 2026 12:01:30 GMT", 90.0),
        ("Sunday, 29-Nov-26 12:00:10 GMT", 10.0),  # RFC 850, still allowed to arrive
        ("Sun Nov 29 12:00:05 2026", 5.0),  # asctime
        ("Sun, 29 Nov 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("99999999", MAX_WAIT),
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Sun, 99 Nov 2026 25:00:00 GMT", None),
    ],
)
def test_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_there_is_one_parser() -> None:
    """No module of ours reads the header itself any more."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readers = [
        str(path.relative_to(root))
        for package in ("connections", "sdp", "worker", "webhooks", "deskwire")
        for path in (root / package).rglob("*.py")
        if 'headers.get("Retry-After"' in path.read_text(encoding="utf-8")
    ]
    assert readers == ["connections/retry_after.py"]
