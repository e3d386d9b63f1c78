"""``Retry-After`` read in both of its forms, in one place for every caller.

RFC 9110 §10.2.3: either a whole number of seconds or an HTTP-date. Token endpoints,
SDP calls and ``http.*`` steps all read it through :func:`retry_after_seconds`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

__all__ = ["parse_retry_after", "retry_after_seconds"]

# A server asking for more than a day is treated as asking for a day: retries stay bounded.
MAX_WAIT = 86_400.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or ``None`` when absent or unreadable.

    ``"120"`` → 120.0; ``"Wed, 21 Oct 2026 07:28:00 GMT"`` → seconds from ``now`` until
    then (0 when it lies in the past). Negative or garbled values are ``None``.
    """
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return min(float(text), MAX_WAIT)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return min(max(0.0, (when - current).total_seconds()), MAX_WAIT)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The response's ``Retry-After`` in seconds (see :func:`parse_retry_after`)."""
    return parse_retry_after(response.headers.get("Retry-After"))
