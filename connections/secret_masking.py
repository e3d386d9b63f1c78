"""Answers come back with the connection's own secrets masked.

A service that echoes what it was sent (a debug endpoint, an error page quoting the request,
an API that returns the key it was called with) would otherwise put a connection's
credential into step outputs, error messages and so the run history. The connection's
client therefore passes every answer through :class:`MaskingTransport`, which replaces each
known secret of that connection (client secret, refresh and access tokens, API key values,
the Basic password, and whatever credential the request itself carried, such as a token
refreshed a moment ago) with ``***`` in the body and the headers, in the forms a service
would echo: as sent, URL-encoded, JSON-escaped, and the whole ``Authorization`` value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import httpx

__all__ = ["MASK", "SECRETS_EXTENSION", "MaskingTransport", "mask_text", "secret_forms"]

MASK = "***"
# A request extension: the secrets of the stored credentials its auth put on it (a
# ``frozenset[str]``), masked in its answer on top of the transport's own.
SECRETS_EXTENSION = "deskwire.secrets"
_MIN_LENGTH = 4  # shorter values would mask ordinary text; no real credential is that short
_DROPPED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def secret_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as sent and as a service might echo it, longest first."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) < _MIN_LENGTH:
            continue
        forms.update({secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]})
    return tuple(sorted(forms, key=len, reverse=True))


@functools.lru_cache(maxsize=256)
def _forms_of(secrets: frozenset[str]) -> tuple[str, ...]:
    """:func:`secret_forms`, once per set: the same credentials come with every request."""
    return secret_forms(secrets)


def mask_text(text: str, forms: Iterable[str]) -> str:
    """``text`` with every form of every secret replaced by :data:`MASK`."""
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def _sent_credentials(request: httpx.Request, names: Iterable[str]) -> set[str]:
    """Credential values the request carries: its Authorization and named parameters."""
    sent: set[str] = set()
    authorization = request.headers.get("authorization")
    if authorization:
        sent.add(authorization)
        sent.add(authorization.split(" ", 1)[-1])
    for name in names:
        sent.update(request.headers.get_list(name))
        sent.update(request.url.params.get_list(name))
    return sent


class MaskingTransport(httpx.BaseTransport):
    """Wraps a transport; answers come back with the connection's secrets masked: those it
    was given, those the request's auth named (:data:`SECRETS_EXTENSION`) and whatever
    credential the request carries."""

    def __init__(
        self,
        secrets: Iterable[str],
        parameter_names: Iterable[str] = (),
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        self._secrets = frozenset(secrets)
        self._names = tuple(parameter_names)
        self._inner = inner or httpx.HTTPTransport(verify=True, retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        stored = request.extensions.get(SECRETS_EXTENSION) or frozenset()
        response = self._inner.handle_request(request)
        forms = _forms_of(self._secrets | stored | _sent_credentials(request, self._names))
        if not forms:
            return response
        try:
            body = response.read()  # decoded: the new answer carries no Content-Encoding
        finally:
            response.close()
        text = body.decode("utf-8", errors="surrogateescape")
        masked = mask_text(text, forms).encode("utf-8", errors="surrogateescape")
        headers = [
            (name, mask_text(value, forms))
            for name, value in response.headers.multi_items()
            if name.lower() not in _DROPPED_HEADERS
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=masked,
            request=request,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()
