"""The auth of a pooled connection client: the current stored credentials on each request.

A connection's client lives as long as its configuration (see
:mod:`connections.pooled_clients`), so its auth cannot hold credentials: a reconnect or a
refresh by another process must apply at the next request. :class:`CurrentCredentials`
asks the strategy for the stored row when a request is sent and builds the auth type's
``httpx.Auth`` from it: one read per request, a prebuilt select whose decoded row is
reused while the row is unchanged (:meth:`TokenStore.load`).
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from connections.auth_strategy import AuthStrategy
from connections.secret_masking import SECRETS_EXTENSION

__all__ = ["CurrentCredentials"]


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

    def __repr__(self) -> str:
        return f"CurrentCredentials({self._link_name!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        user_key = self._user_key
        record = self._strategy.credentials(user_key)  # now: a reconnect applies at once
        if record is not None:
            request.extensions = {**request.extensions, SECRETS_EXTENSION: record.secret_values}
        yield from self._strategy.auth_with(user_key, record).auth_flow(request)
