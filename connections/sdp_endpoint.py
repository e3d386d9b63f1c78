"""Where and how to call a ServiceDesk Plus instance: :func:`sdp_endpoint`."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx

from connections.credentials import CredentialKeeper
from connections.errors import UnsupportedOperationError
from connections.results import SdpEndpoint
from connections.specs import ConnectionSpec, OAuth2Connection
from connections.store import StoredToken

__all__ = ["sdp_endpoint"]


def sdp_endpoint(
    keeper: CredentialKeeper,
    spec: ConnectionSpec,
    shared_row: Callable[[], StoredToken | None] | None = None,
) -> SdpEndpoint:
    """The REST API v3 base and Accept header of an ``sdp`` / ``sdp_onprem`` connection.

    Cloud base: the connection's explicit ``base_url`` (custom domain) if set; else the
    token reply's ``api_domain`` when that is an SDP host; else the data centre the
    token came from; else the configured data centre. ``/app/<portal>`` is added when
    a portal is set. ``shared_row`` gives the connection's shared stored row when the
    caller has just read it (default: read from the store, only when needed).
    """
    link_name = spec.link_name
    kind = spec.service.sdp
    if kind is None:
        raise UnsupportedOperationError(
            f"connection '{link_name}' uses service {spec.service.key}, not sdp or sdp_onprem"
        )
    accept = spec.accept or "application/vnd.manageengine.sdp.v3+json"
    if kind == "onprem":
        if not spec.base_url:
            keeper.require_configured(spec)
        return SdpEndpoint(link_name, f"{spec.base_url}/api/v3", accept, onprem=True)
    if not isinstance(spec, OAuth2Connection):  # pragma: no cover - the catalogue's sdp is
        raise UnsupportedOperationError(f"connection '{link_name}': SDP cloud takes OAuth 2.0")
    base = spec.base_url_override
    if base is None:
        record = shared_row() if shared_row else keeper.store.load(link_name, "")
        meta = record.meta if record is not None else {}
        hosts = {
            httpx.URL(dc.base_url).host: dc.base_url
            for dc in spec.service.data_centres.values()
            if dc.base_url
        }
        api_domain = str(meta.get("api_domain") or "")
        location = str(meta.get("data_centre") or "")
        if api_domain and httpx.URL(api_domain).host in hosts:
            base = hosts[httpx.URL(api_domain).host]
        elif location in spec.service.data_centres:
            base = spec.service.data_centres[location].base_url
    base = (base or spec.base_url or "").rstrip("/")
    portal = f"/app/{quote(spec.portal)}" if spec.portal else ""
    return SdpEndpoint(link_name, f"{base}{portal}/api/v3", accept, onprem=False)
