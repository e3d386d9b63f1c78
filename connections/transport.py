"""Every outgoing request of a connection passes here: HTTPS only, except loopback.

Credentials must never cross the network in the clear, so the check sits in the transport
(it sees every request, including redirects and the ones an auth flow re-sends), not in
the callers. Plain HTTP is allowed to ``localhost``, ``127.0.0.0/8`` and ``::1`` only, for
tests and local fakes.

Also here: a logging filter that masks credential-bearing query parameters in httpx's
request log lines (``GET https://…?access_token=…``).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable

import httpx

from connections.errors import InsecureURLError

__all__ = [
    "HttpsOnlyTransport",
    "QueryRedactor",
    "SharedTransport",
    "check_url",
    "is_loopback",
    "safe_url",
]


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_url(url: httpx.URL | str) -> str:
    """Scheme, host, port and path only: query strings may carry credentials."""
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"


def check_url(url: httpx.URL | str) -> None:
    """Raise :class:`InsecureURLError` unless ``url`` is https, or http to loopback."""
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)  # a request's is parsed
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and is_loopback(parsed.host):
        return
    port = f":{parsed.port}" if parsed.port else ""
    raise InsecureURLError(
        f"refusing to send a request to {parsed.scheme}://{parsed.host}{port}: connections "
        "only use https:// (plain http is allowed to localhost only)"
    )


class HttpsOnlyTransport(httpx.BaseTransport):
    """Wraps a transport and checks each request's URL before it is sent."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport(verify=True, retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_url(request.url)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class SharedTransport:
    """One pooled :class:`HttpsOnlyTransport` per process, lent to many short-lived clients.

    Building a transport builds a TLS context (loading the CA bundle) and a connection pool:
    doing that for every step was half of a worker's time. Clients get a :meth:`borrow`ed
    view whose ``close`` leaves the pool open, so they keep their ``with`` blocks; the
    pool's connections are reused across steps and connections (keep-alive per host).
    The URL check still runs on every request. A forked child builds its own (a TLS
    connection must not be shared across processes).
    """

    def __init__(self, factory: Callable[[], httpx.BaseTransport] = HttpsOnlyTransport) -> None:
        self._factory = factory  # e.g. an address-checked transport for anonymous steps
        self._lock = threading.Lock()
        self._transport: httpx.BaseTransport | None = None
        self._pid = 0

    def current(self) -> httpx.BaseTransport:
        """This process's pooled transport, opened if needed (after a fork or a close)."""
        with self._lock:
            if self._transport is None or self._pid != os.getpid():
                self._transport = self._factory()
                self._pid = os.getpid()
            return self._transport

    def borrow(self) -> httpx.BaseTransport:
        """A transport over this process's pool; closing it does not close the pool."""
        return _Borrowed(self.current())

    def live(self) -> httpx.BaseTransport:
        """A transport for long-lived clients: each request goes to the pool current at
        that moment (a closed pool is reopened, a forked child opens its own); closing it
        does not close the pool."""
        return _Live(self)

    def close(self) -> None:
        """Close the pool (the next :meth:`borrow` opens a new one)."""
        with self._lock:
            if self._transport is not None and self._pid == os.getpid():
                self._transport.close()
            self._transport = None


class _Borrowed(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        """The pool stays open for the next client."""


class _Live(httpx.BaseTransport):
    def __init__(self, shared: SharedTransport) -> None:
        self._shared = shared

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._shared.current().handle_request(request)

    def close(self) -> None:
        """The pool belongs to the :class:`SharedTransport`."""


class QueryRedactor(logging.Filter):
    """Masks the values of sensitive query parameters in log records' arguments."""

    DEFAULT = frozenset(
        {"access_token", "refresh_token", "token", "code", "client_secret", "oauth_verifier"}
    )

    def __init__(self) -> None:
        super().__init__()
        self._names: set[str] = set(self.DEFAULT)
        self._pattern = self._compile()

    def add(self, names: Iterable[str]) -> None:
        """Mask these parameter names too."""
        before = len(self._names)
        self._names.update(name for name in names if name)
        if len(self._names) != before:
            self._pattern = self._compile()

    def _compile(self) -> re.Pattern[str]:
        names = "|".join(sorted(re.escape(n) for n in self._names))
        return re.compile(rf"(?i)([?&](?:{names})=)[^&#\s\"']*")

    def redact(self, text: str) -> str:
        """Replace the values of sensitive parameters with ``***``."""
        return self._pattern.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.redact(str(arg)) if isinstance(arg, httpx.URL | str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        return True


REDACTOR = QueryRedactor()


def install_redactor(names: Iterable[str] = ()) -> QueryRedactor:
    """Attach the redactor to the ``httpx`` and ``httpcore`` loggers (idempotent)."""
    REDACTOR.add(names)
    # httpcore's DEBUG trace prints raw response headers, where a service may echo a
    # credential back; it never logs below INFO, even when deskwire runs at DEBUG.
    httpcore_log = logging.getLogger("httpcore")
    if httpcore_log.getEffectiveLevel() < logging.INFO:
        httpcore_log.setLevel(logging.INFO)
    for logger_name in ("httpx", "httpcore"):
        logger = logging.getLogger(logger_name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    return REDACTOR
