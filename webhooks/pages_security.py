"""Admin sign-in, the session cookie key, CSRF tokens and a failed-login throttle.

The connection pages have one admin password (``DESKWIRE_ADMIN_PASSWORD``). The Flask
session cookie is signed (not encrypted) with a key derived from the newest
``DESKWIRE_SECRET_KEY`` under a fixed label, so the token-encryption key itself never signs
anything a browser holds. The session stores a fingerprint of the password: changing the
password signs every admin out.

A browser connect is bound to the session that started it: starting one (a POST with the
CSRF token) remembers a digest of the attempt's key (the OAuth ``state``, or the OAuth 1.0a
request ``oauth_token``) in the session, and the callback is only taken when it brings back
a key this session started. A link on another site can therefore neither start a connect in
an admin's browser nor finish one started elsewhere.
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
    "connect_started_here",
    "csrf_token",
    "csrf_valid",
    "password_fingerprint",
    "password_matches",
    "remember_connect",
    "session_key",
]

CSRF_FIELD = "csrf_token"
_SESSION_LABEL = b"deskwire/connection-pages/session-cookie/v1"
_PASSWORD_LABEL = b"deskwire/connection-pages/admin-password/v1\x00"
_ATTEMPTS = "connect_attempts"
_ATTEMPTS_KEPT = 5  # a few connects started side by side (several tabs) stay valid


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


def _attempt_digest(key: str) -> str:
    return hashlib.sha256(b"deskwire/connect-attempt\x00" + key.encode("utf-8")).hexdigest()


def remember_connect(key: str) -> None:
    """Remember (a digest of) a connect attempt this session started."""
    known = session.get(_ATTEMPTS)
    kept = [d for d in known if isinstance(d, str)] if isinstance(known, list) else []
    kept.append(_attempt_digest(key))
    session[_ATTEMPTS] = kept[-_ATTEMPTS_KEPT:]


def connect_started_here(key: str | None) -> bool:
    """Whether this session started the connect attempt ``key`` names.

    Digests stay after the callback, so a replay in the same session reaches the token
    store, which refuses it as used (the store is what makes every attempt single use).
    """
    known = session.get(_ATTEMPTS)
    if not key or not isinstance(known, list):
        return False
    wanted = _attempt_digest(key).encode("ascii")
    return any(isinstance(d, str) and hmac.compare_digest(d.encode("ascii"), wanted) for d in known)


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
