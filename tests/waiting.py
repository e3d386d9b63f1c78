"""Waiting in tests: on a condition, with a bound, never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.05


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    *,
    interval: float = POLL_SECONDS,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Fails the test when ``timeout`` seconds pass first, saying ``what`` did not happen (a
    callable ``what`` is asked then, so the message can show the state at that moment) and
    what the predicate returned last. ``interval`` is how long to wait between two looks.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            described = what() if callable(what) else what
            raise AssertionError(f"{described}: not within {timeout:g} s (last: {found!r})")
        time.sleep(min(interval, remaining))
