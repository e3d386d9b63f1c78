"""One authenticated ``httpx.Client`` per connection (and user) per process.

Building a connection's client — its hosts, its transports, the client itself — for every
step cost a worker more than the call it made. :class:`ClientPool` keeps one per
(connection, user key) and builds it again only when what it is built from changes (the
connections file reloaded into another spec, an SDP endpoint moved to another data
centre). Credentials are not part of it: its auth reads them at request time
(:mod:`connections.current_credentials`).

The client is a :class:`SharedClient`: callers keep their ``with client:`` blocks and
``close()`` calls, which leave it open, and cannot reconfigure it for the others. It keeps
no cookies, so nothing a service sets in one step (or for one user) rides along on the next.
A forked child builds its own (Celery forks after import; sockets are not shared).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, Self

import httpx

from connections.specs import ConnectionSpec

__all__ = ["ClientPool", "ClientShape", "SharedClient", "no_cookies"]


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing a response sets (given to a client as the jar
    itself: ``httpx.Cookies`` would copy its cookies into a jar of the default policy)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _fixed(name: str) -> Any:
    """Client setting ``name``, read-only once the client is built."""
    base = getattr(httpx.Client, name)

    def refuse(self: SharedClient, value: Any) -> None:
        if self._built:
            raise AttributeError(
                f"a connection's client is shared; pass {name} with the request instead"
            )
        base.fset(self, value)

    return property(base.fget, refuse)


class SharedClient(httpx.Client):
    """A connection's client, shared by every caller in this process (see the module doc)."""

    _built = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cookies=no_cookies(), **kwargs)
        self._built = True

    auth = _fixed("auth")
    base_url = _fixed("base_url")
    cookies = _fixed("cookies")
    event_hooks = _fixed("event_hooks")
    headers = _fixed("headers")
    params = _fixed("params")
    timeout = _fixed("timeout")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        """Leaves the client open for the next caller."""

    def close(self) -> None:
        """Leaves the client open: it is shared (its connections belong to the process's
        pooled transport, closed by :meth:`Connections.close`)."""


@dataclass(frozen=True)
class ClientShape:
    """What a connection's client is built from; when it changes, the client is rebuilt."""

    spec: ConnectionSpec
    base_url: str
    accept: str | None

    def same_as(self, other: ClientShape) -> bool:
        """The same spec object (a reload makes new ones), base URL and Accept header."""
        return (
            self.spec is other.spec
            and self.base_url == other.base_url
            and self.accept == other.accept
        )


class ClientPool:
    """The clients of one :class:`~connections.Connections`, by (link name, user key)."""

    LIMIT = 1024  # per-user connections: beyond this many users, start over

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], tuple[ClientShape, SharedClient]] = {}
        self._pid = os.getpid()

    def get(
        self, user_key: str, shape: ClientShape, build: Callable[[], SharedClient]
    ) -> SharedClient:
        """The client of (``shape.spec``, ``user_key``), built by ``build`` if missing or of
        another shape."""
        key = (shape.spec.link_name, user_key)
        found = self._clients.get(key)
        if found is not None and self._pid == os.getpid() and found[0].same_as(shape):
            return found[1]
        with self._lock:
            if self._pid != os.getpid():
                self._clients, self._pid = {}, os.getpid()
            found = self._clients.get(key)
            if found is not None and found[0].same_as(shape):
                return found[1]
            if len(self._clients) >= self.LIMIT:
                self._clients.clear()
            client = build()
            # A replaced client is dropped, not closed: a request of another thread may be
            # under way on it, and its connections belong to the shared transport.
            self._clients[key] = (shape, client)
            return client

    def clear(self) -> None:
        """Forget every client (the next use builds them again)."""
        with self._lock:
            self._clients = {}
