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

import redis
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
    """At most ``limit`` failed logins per client address in ``window`` seconds, in Redis.

    Kept in Redis so that every web process (and every gunicorn worker of each) counts the
    same failures, and a restart of the web process forgets nothing. Each address has one
    sorted set of failure times (Redis server time, so hosts with skewed clocks agree) that
    expires with the window, so a flood of addresses cannot grow Redis without end. The
    address is stored as a digest.
    """

    def __init__(
        self,
        client: redis.Redis,
        limit: int = 5,
        window: float = 300.0,
        prefix: str = "deskwire:login-failures:",
    ) -> None:
        self.limit = limit
        self.window = window
        self._redis = client
        self._prefix = prefix
        self._check = client.register_script(_CHECK)
        self._fail = client.register_script(_FAIL)

    def _key(self, client: str) -> str:
        return self._prefix + hashlib.sha256(client.encode("utf-8")).hexdigest()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or ``None`` when it may try now.

        Raises :class:`redis.RedisError` when Redis cannot be reached: the caller refuses
        the sign-in rather than allow unthrottled guessing.
        """
        wait = float(self._check(keys=[self._key(client)], args=[self.limit, self.window]))
        return None if wait <= 0 else max(1.0, wait)

    def failed(self, client: str) -> None:
        """Count one failed login of ``client``."""
        member = secrets.token_hex(8)
        self._fail(keys=[self._key(client)], args=[self.window, member, self.limit * 4])

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        self._redis.delete(self._key(client))


def _now_lua() -> str:
    return "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1e6\n"


# KEYS[1] failures of one address; ARGV: limit, window. Returns seconds to wait (0: none).
_CHECK = (
    _now_lua()
    + """
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then return '0' end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""
)

# KEYS[1] failures of one address; ARGV: window, a unique member, the most entries kept.
_FAIL = (
    _now_lua()
    + """
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
redis.call('EXPIRE', KEYS[1], math.ceil(window))
return 1
"""
)
