"""What a shadow step would have sent: requests captured at the transport, never sent.

A shadow step runs the same action code as a live one (templates, SDP operation building,
the connection's base URL), but its HTTP clients carry a :class:`RecordingTransport`: each
request is written down as a :class:`WouldSend` (credentials left out, the connection's
secrets masked, credential-looking keys redacted) and answered locally with an empty
success, so nothing leaves the worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx

from connections.secret_masking import mask_text, secret_forms
from deskwire.run_history import redact

# Stands in for a host deskwire does not know yet (no such connection, no base URL): a
# valid name for httpx, shown as ``Address.missing`` in what is recorded.
PLACEHOLDER_HOST = "unknown-host.invalid"
PLACEHOLDER_BASE = f"https://{PLACEHOLDER_HOST}"
# Headers that carry credentials or only concern the wire: never recorded.
_LEFT_OUT_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "accept-encoding",
        "connection",
        "user-agent",
    }
)
# The reply every captured request gets: an SDP-style success with no content.
_EMPTY_SUCCESS = {"response_status": {"status_code": 2000, "status": "success"}}


@dataclass(frozen=True)
class Address:
    """Where a step through a connection goes, resolved without its credentials.

    ``base_url``: the connection's base (an SDP connection's ``…/api/v3``), or
    :data:`PLACEHOLDER_BASE` when it is not known; then ``missing`` says why, and is shown in
    place of the host (``<no sdp connection configured>``). ``secrets``: values to mask;
    ``secret_params``: header and query names that carry credentials.
    """

    link: str | None
    base_url: str = ""
    accept: str | None = None
    onprem: bool = False
    missing: str | None = None
    secrets: frozenset[str] = frozenset()
    secret_params: tuple[str, ...] = ()


@dataclass(frozen=True)
class WouldSend:
    """One request a shadow step would have sent (JSON-ready through :meth:`to_dict`)."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any

    def to_dict(self) -> dict[str, Any]:
        """The stored shape: ``{method, url, headers, body}``."""
        return {"method": self.method, "url": self.url, "headers": self.headers, "body": self.body}


def describe(request: httpx.Request, address: Address) -> WouldSend:
    """The request as recorded: no credential headers or parameters, secrets masked."""
    forms = secret_forms(address.secrets)
    hidden = {name.lower() for name in address.secret_params if name}
    url = request.url
    if hidden:
        kept = [(k, v) for k, v in url.params.multi_items() if k.lower() not in hidden]
        url = url.copy_with(params=kept)
    shown_url = mask_text(str(url), forms)
    if address.missing is not None:
        shown_url = shown_url.replace(PLACEHOLDER_HOST, address.missing)
    headers = {
        name: mask_text(value, forms)
        for name, value in request.headers.items()
        if name.lower() not in _LEFT_OUT_HEADERS and name.lower() not in hidden
    }
    # Credential-looking keys (a rule's own `X-Api-Key:` header, a `password` field) are
    # redacted as in every other part of the run history.
    return WouldSend(request.method, shown_url, redact(headers), redact(_body(request, forms)))


def _body(request: httpx.Request, forms: Iterable[str]) -> Any:
    """The body as data where it is JSON or a form (SDP's ``input_data`` decoded)."""
    raw = request.content
    if not raw:
        return None
    text = mask_text(raw.decode("utf-8", errors="replace"), forms)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return _json_or_text(text)
    if kind == "application/x-www-form-urlencoded":
        return {key: _json_or_text(value) for key, value in parse_qsl(text, keep_blank_values=True)}
    return text


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class RecordingTransport(httpx.BaseTransport):
    """Records every request into ``sends`` and answers it locally; nothing is sent."""

    def __init__(self, address: Address, sends: list[WouldSend]) -> None:
        self._address = address
        self._sends = sends

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self._sends.append(describe(request, self._address))
        return httpx.Response(200, json=_EMPTY_SUCCESS, request=request)
