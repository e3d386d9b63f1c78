"""The auth of a pooled connection client: the current stored credentials on each request.

A connection's client lives as long as its configuration (see
:mod:`connections.pooled_clients`), so its auth cannot hold credentials: a reconnect or a
refresh by another process must apply at the next request. :class:`CurrentCredentials`
asks the strategy for the stored row when a request is sent and builds the auth type's
``httpx.Auth`` from it: one read per request, a prebuilt select whose decoded row is
reused while the row is unchanged (:meth:`TokenStore.load`).

Handing out a client reads the row too (to refuse an unusable connection with its
reason): that read is *primed* for the same thread's next request within
:data:`PRIMED_FOR` seconds, which uses it instead of reading again (the read cost a step
a database statement), unless this process wrote credentials since (a refresh, a
reconnect, a revoke: :attr:`TokenStore.writes`). Another process's write in between
applies to the request after it, as one made just after the request was sent would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx

from connections.auth_strategy import AuthStrategy
from connections.secret_masking import SECRETS_EXTENSION
from connections.store import StoredToken, TokenStore

__all__ = ["CurrentCredentials"]

PRIMED_FOR = 1.0  # seconds a row read when the client was handed out serves its request


class CurrentCredentials(httpx.Auth):
    """Puts the connection's current credentials on each request (see the module doc).

    The answer is masked with the secrets of the very row used: they go to the transport
    in the request's :data:`~connections.secret_masking.SECRETS_EXTENSION`.
    """

    def __init__(
        self,
        strategy: AuthStrategy,
        link_name: str,
        user_key: str,
        *,
        requires_request_body: bool,
    ) -> None:
        self._strategy = strategy
        self._link_name = link_name
        self._user_key = user_key
        self.requires_request_body = requires_request_body  # the auth type's need
        # The thread's primed row: (row, monotonic time, TokenStore.writes), used once.
        self._primed = threading.local()

    def prime(self, record: StoredToken | None, writes: int) -> None:
        """The row just read for this thread (``writes``: :attr:`TokenStore.writes` before
        the read), for its next request (see the module doc)."""
        self._primed.value = (record, time.monotonic(), writes)

    def _current(self) -> StoredToken | None:
        primed: tuple[StoredToken | None, float, int] | None = getattr(self._primed, "value", None)
        if primed is not None:
            self._primed.value = None  # one request only
            record, read_at, writes = primed
            if writes == TokenStore.writes and time.monotonic() - read_at <= PRIMED_FOR:
                return record
        return self._strategy.credentials(self._user_key)  # now: a reconnect applies at once

    def __repr__(self) -> str:
        return f"CurrentCredentials({self._link_name!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        user_key = self._user_key
        record = self._current()
        if record is not None:
            request.extensions = {**request.extensions, SECRETS_EXTENSION: record.secret_values}
        yield from self._strategy.auth_with(user_key, record).auth_flow(request)
