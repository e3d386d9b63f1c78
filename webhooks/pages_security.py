"""Admin sign-in, the session cookie key, CSRF tokens and a failed-login throttle.

The connection pages have one admin password (``DESKWIRE_ADMIN_PASSWORD``). The Flask
session cookie is signed (not encrypted) with a key derived from the newest
``DESKWIRE_SECRET_KEY`` under a fixed label, so the token-encryption key itself never signs
anything a browser holds. The session stores a fingerprint of the password: changing the
password signs every admin out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from flask import request, session

__all__ = [
    "CSRF_FIELD",
    "LoginThrottle",
    "csrf_token",
    "csrf_valid",
    "password_fingerprint",
    "password_matches",
    "session_key",
]

CSRF_FIELD = "csrf_token"
_SESSION_LABEL = b"deskwire/connection-pages/session-cookie/v1"
_PASSWORD_LABEL = b"deskwire/connection-pages/admin-password/v1\x00"


def session_key(secret_key: str) -> bytes:
    """The key that signs the admin session cookie: HMAC-SHA256(secret key, fixed label)."""
    return hmac.new(secret_key.encode("utf-8"), _SESSION_LABEL, hashlib.sha256).digest()


def password_fingerprint(key: bytes, password: str) -> str:
    """What the session remembers of the password it was opened with (not reversible)."""
    return hmac.new(key, _PASSWORD_LABEL + password.encode("utf-8"), hashlib.sha256).hexdigest()


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison that does not reveal the expected password's length."""
    left = hashlib.sha256(given.encode("utf-8")).digest()
    right = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(left, right)


def csrf_token() -> str:
    """This session's CSRF token, created on first use (templates put it in every form)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_valid() -> bool:
    """Whether the submitted form carries this session's CSRF token."""
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


class LoginThrottle:
    """At most ``limit`` failed logins per client address in ``window`` seconds.

    Kept in process memory: each web process counts on its own, which is enough to make
    guessing slow; the address table is bounded so a flood cannot grow it without end.
    """

    def __init__(self, limit: int = 5, window: float = 300.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self._max_clients = max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or ``None`` when it may try now."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return None
            return max(1.0, failures[0] + self.window - now)

    def failed(self, client: str) -> None:
        """Count one failed login of ``client``."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(client, now)
            failures.append(now)
            self._failures[client] = failures
            if len(self._failures) > self._max_clients:
                oldest = min(self._failures, key=lambda key: self._failures[key][-1])
                del self._failures[oldest]

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        with self._lock:
            self._failures.pop(client, None)
