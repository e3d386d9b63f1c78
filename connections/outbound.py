"""Where outgoing requests may go: credentials stay home, anonymous calls stay outside.

Two rules, both applied in the transport so that every request is checked, including the
ones an auth flow re-sends and every hop of a redirect:

* **A connection's credentials go only to that connection's own hosts**: the host of its
  base URL (the SDP endpoint for SDP), of its service's base URL, of its OAuth endpoints
  (already trusted with its client secret), and the ``hosts:`` the service or the
  connection declares. :class:`OnlyHosts` refuses any other host before the
  request (which already carries the credentials) is sent.
* **A step without a connection never reaches inside the network**: :class:`AddressGuard`
  resolves the host itself, refuses loopback, private, link-local (cloud metadata),
  shared, reserved and multicast addresses, and connects to the very address it checked
  (so a DNS answer that changes between check and connect cannot slip through). Hosts and
  networks listed in ``DESKWIRE_HTTP_ALLOW`` are let through; tests list loopback there.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

from connections.errors import ConnectionsError

__all__ = [
    "AddressGuard",
    "AddressPolicy",
    "BlockedAddressError",
    "CredentialHostError",
    "OnlyHosts",
    "guarded_transport",
]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Public addresses that still answer as a cloud's instance-metadata or host agent.
_METADATA = frozenset({ipaddress.ip_address("168.63.129.16")})


class CredentialHostError(ConnectionsError):
    """A request through a connection named a host that is not the connection's."""


class BlockedAddressError(ConnectionsError):
    """A request without a connection named a loopback, private or metadata address."""


def _host_of(url: str | None) -> str | None:
    if not url or "{" in url:
        return None
    host = httpx.URL(url).host
    return host.lower() or None


def connection_hosts(*urls: str | None, declared: Iterable[str] = ()) -> frozenset[str]:
    """The hosts of ``urls`` (templates and empty values skipped) plus ``declared``."""
    hosts = {host for host in (_host_of(url) for url in urls) if host}
    hosts.update(host.lower() for host in declared)
    return frozenset(hosts)


class OnlyHosts(httpx.BaseTransport):
    """Sends a connection's requests only to its own hosts (credentials never leave them)."""

    def __init__(
        self, link_name: str, hosts: frozenset[str], inner: httpx.BaseTransport | None = None
    ) -> None:
        self.link_name = link_name
        self.hosts = hosts
        self._inner = inner or httpx.HTTPTransport(verify=True, retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.lower()
        if host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts)) or "none (set base_url or hosts)"
            raise CredentialHostError(
                f"connection '{self.link_name}' sends its credentials only to its own hosts "
                f"({allowed}); refusing a request to {host}. Use a URL on one of those hosts, "
                f"add the host to the connection's `hosts:`, or call {host} without the "
                "connection"
            )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@dataclass(frozen=True)
class AddressPolicy:
    """Which destinations a request without a connection may reach."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[_Network, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressPolicy:
        """Build from ``DESKWIRE_HTTP_ALLOW`` entries: host names, addresses or CIDRs."""
        hosts: set[str] = set()
        networks: list[_Network] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: _Address) -> str | None:
        """Why ``address`` (``host`` resolved) may not be reached, or ``None`` if it may."""
        if host.lower() in self.allowed_hosts:
            return None
        mapped = getattr(address, "ipv4_mapped", None)
        checked: _Address = mapped if mapped is not None else address
        if any(checked in network for network in self.allowed_networks):
            return None
        if checked.is_loopback:
            return "a loopback address"
        if checked.is_link_local:
            return "a link-local address (cloud metadata lives there)"
        if checked in _METADATA:
            return "a cloud metadata address"
        if checked.is_private:
            return "a private address"
        if checked.is_multicast or checked.is_unspecified or not checked.is_global:
            return "not a public address"
        return None

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` that may be reached; raise if any may not."""
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
        addresses: list[str] = []
        for _family, _type, _proto, _name, sockaddr in found:
            text = str(sockaddr[0]).split("%", 1)[0]
            reason = self.refusal(host, ipaddress.ip_address(text))
            if reason is not None:
                shown = host if host == text else f"{host} ({text})"
                raise BlockedAddressError(
                    f"refusing to call {shown}: {reason}. Steps without a connection only "
                    "reach public addresses; list the host or network in DESKWIRE_HTTP_ALLOW "
                    "to allow it"
                )
            if text not in addresses:
                addresses.append(text)
        return addresses


class AddressGuard(httpcore.NetworkBackend):
    """Resolves, checks and connects to the checked address (no second DNS lookup)."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first reachable checked address of ``host``."""
        error: Exception | None = None
        for address in self._policy.resolve(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address to connect to for {host}")

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Unix sockets are local by definition: refused."""
        raise BlockedAddressError("refusing to call a Unix socket from a step")

    def sleep(self, seconds: float) -> None:
        """Delegate to the wrapped backend."""
        self._inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy) -> httpx.HTTPTransport:
    """A verifying transport whose every connection passes :class:`AddressGuard`."""
    transport = httpx.HTTPTransport(verify=True, retries=0, trust_env=False)
    # httpx builds its connection pool without a way to pass a network backend; give it a
    # pool with the same TLS settings and the guard (httpx and httpcore are pinned).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=True, trust_env=False),
        retries=0,
        network_backend=AddressGuard(policy),
    )
    return transport
