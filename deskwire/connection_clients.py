"""The HTTP and SDP clients a worker's steps call through (``worker.steps.Clients``)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from connections import Connections, ConnectionsError, SdpEndpoint
from connections.outbound import AddressPolicy, guarded_transport
from connections.transport import HttpsOnlyTransport, SharedTransport
from sdp import SdpClient
from worker.would_send import PLACEHOLDER_BASE, Address

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

    def _sdp_link(self, link: str | None, source: str) -> str:
        """``link``, or by default the source's own SDP connection, else ``sdp``."""
        if link is not None:
            return link
        spec = self._connections().config.connections.get(source)
        return source if spec is not None and spec.service.sdp else "sdp"

    def sdp(self, link: str | None, *, source: str) -> tuple[SdpClient, str]:
        """The SDP client of ``link``; by default the source's own SDP connection, else ``sdp``."""
        link = self._sdp_link(link, source)
        http, endpoint = self._connections().sdp_client(link)
        client = SdpClient(
            http,  # the connection's shared client: SdpClient.close leaves it open
            endpoint.api_base,
            accept=endpoint.accept,
            onprem=endpoint.onprem,
        )
        return client, link

    def sdp_links(self) -> list[str]:
        """Link names of every declared SDP connection (Cloud or on-premises)."""
        declared = self._connections().config.connections
        return sorted(link for link, spec in declared.items() if spec.service.sdp is not None)

    def is_sdp(self, link: str) -> bool:
        """Whether ``link`` is a declared connection to SDP (Cloud or on-premises)."""
        spec = self._connections().config.connections.get(link)
        return spec is not None and spec.service.sdp is not None

    def address(self, link: str | None, *, source: str, sdp: bool) -> Address:
        """Where a call through ``link`` goes, from the configuration alone: no token is
        read or fetched, so a declared but unconnected connection resolves too."""
        if sdp:
            link = self._sdp_link(link, source)
        if link is None:
            return Address(None)
        connections = self._connections()
        spec = connections.config.connections.get(link)
        if spec is None:
            what = "sdp connection" if sdp else f"connection {link!r}"
            base = PLACEHOLDER_BASE + ("/api/v3" if sdp else "")
            return Address(link, base, missing=f"<no {what} configured>")
        names = spec.service.secret_params
        try:
            secrets = connections.known_secrets(link)
        except ConnectionsError:  # an unreadable store: nothing of it can reach the record
            secrets = frozenset()
        base, accept, onprem = spec.base_url or "", None, False
        if spec.service.sdp:
            try:
                endpoint: SdpEndpoint | None = connections.sdp_endpoint(link)
            except ConnectionsError:
                endpoint = None
            # Cloud with neither a base URL nor a token yet gives a relative ``/app/…``.
            if endpoint is None or not httpx.URL(endpoint.api_base).is_absolute_url:
                base = ""
            else:
                base, accept, onprem = endpoint.api_base, endpoint.accept, endpoint.onprem
        if not base:
            return Address(
                link,
                PLACEHOLDER_BASE + ("/api/v3" if spec.service.sdp else ""),
                accept=accept,
                onprem=onprem,
                missing=f"<connection {link!r} has no base URL configured>",
                secrets=secrets,
                secret_params=names,
            )
        return Address(link, base, accept, onprem, None, secrets, names)
