"""The HTTP and SDP clients a worker's steps call through (``worker.steps.Clients``)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connections import Connections
from connections.outbound import AddressPolicy, guarded_transport
from connections.transport import HttpsOnlyTransport, SharedTransport
from sdp import SdpClient

__all__ = ["ConnectionClients"]


class ConnectionClients:
    """HTTP and SDP clients through the configured connections (``worker.steps.Clients``)."""

    def __init__(
        self,
        connections: Callable[[], Connections],
        timeout: float,
        policy: AddressPolicy | None = None,
    ) -> None:
        self._connections = connections
        self._timeout = timeout
        self._policy = policy or AddressPolicy()
        # One pooled transport for steps without a connection, address-checked.
        self._pool = SharedTransport(lambda: HttpsOnlyTransport(guarded_transport(self._policy)))

    def http(self, link: str | None, *, user: str | None = None) -> httpx.Client:
        """An authenticated client for ``link``, or a plain verified one."""
        if link is None:
            # No credentials: HTTPS (loopback excepted), verified, timed out, and only to
            # public addresses unless DESKWIRE_HTTP_ALLOW lists the destination.
            return httpx.Client(
                transport=self._pool.borrow(),
                timeout=httpx.Timeout(self._timeout),
                verify=True,
                trust_env=False,  # an environment proxy would bypass the address check
            )
        return self._connections().client(link, user=user)

    def sdp(self, link: str | None, *, source: str) -> tuple[SdpClient, str]:
        """The SDP client of ``link``; by default the source's own SDP connection, else ``sdp``."""
        connections = self._connections()
        if link is None:
            spec = connections.config.connections.get(source)
            link = source if spec is not None and spec.service.sdp else "sdp"
        endpoint = connections.sdp_endpoint(link)
        client = SdpClient(
            connections.client(link),
            endpoint.api_base,
            accept=endpoint.accept,
            onprem=endpoint.onprem,
        )
        return client, link

    def is_sdp(self, link: str) -> bool:
        """Whether ``link`` is a declared connection to SDP (Cloud or on-premises)."""
        spec = self._connections().config.connections.get(link)
        return spec is not None and spec.service.sdp is not None
