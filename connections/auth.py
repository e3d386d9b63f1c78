"""``httpx.Auth`` implementations of the four auth types.

Each puts credentials on a request in the service's placement. :class:`OAuth2Auth` runs
"add token → send → on 401 refresh once → resend" through a :class:`TokenSource`, which
owns caching, ahead-of-expiry refresh and the cross-process refresh lock; it may decline
the refresh after a 401 (a token it just fetched), and then the 401 is the answer.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Sequence
from typing import Protocol
from urllib.parse import parse_qsl, urlencode

import httpx
from authlib.oauth1 import SIGNATURE_TYPE_BODY, SIGNATURE_TYPE_HEADER, SIGNATURE_TYPE_QUERY
from authlib.oauth1 import ClientAuth as OAuth1ClientAuth
from pydantic import SecretStr

from connections.errors import ConnectionsError
from connections.specs import ApiKeyParam

__all__ = ["ApiKeyAuth", "BasicAuth", "OAuth1Auth", "OAuth2Auth", "TokenSource"]

_FORM = "application/x-www-form-urlencoded"


def _rebuild(
    request: httpx.Request,
    *,
    url: str | httpx.URL,
    headers: httpx.Headers | dict[str, str],
    body: bytes,
) -> httpx.Request:
    """A copy of ``request`` with a new URL, headers and body (extensions kept).

    Content-Length is recomputed by httpx from the new body.
    """
    fresh_headers = httpx.Headers(headers)
    fresh_headers.pop("Content-Length", None)
    fresh = httpx.Request(request.method, url, headers=fresh_headers, content=body or None)
    fresh.extensions = request.extensions
    return fresh


class ApiKeyAuth(httpx.Auth):
    """Sends each API key parameter in its placement: query string, header or form body."""

    def __init__(self, link_name: str, params: Sequence[tuple[ApiKeyParam, SecretStr]]) -> None:
        self._link_name = link_name
        self._params = tuple(params)
        self.requires_request_body = any(p.placement == "form" for p, _ in self._params)

    def __repr__(self) -> str:
        names = ", ".join(p.name for p, _ in self._params)
        return f"ApiKeyAuth({self._link_name!r}, params=[{names}])"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        form: list[tuple[str, str]] = []
        for param, secret in self._params:
            value = param.render(secret.get_secret_value())
            if param.placement == "header":
                request.headers[param.name] = value
            elif param.placement == "query":
                request.url = request.url.copy_set_param(param.name, value)
            else:
                form.append((param.name, value))
        if form:
            request = self._add_form(request, form)
        yield request

    def _add_form(self, request: httpx.Request, form: list[tuple[str, str]]) -> httpx.Request:
        content_type = request.headers.get("Content-Type", "")
        body = request.content
        if body and not content_type.startswith(_FORM):
            raise ConnectionsError(
                f"connection '{self._link_name}' sends its key in the form body, but this "
                f"request's body is {content_type or 'not form data'}; send form data "
                "(data=...) or no body"
            )
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True) + form
        encoded = urlencode(fields).encode("utf-8")
        headers = httpx.Headers(request.headers)
        headers["Content-Type"] = _FORM
        return _rebuild(request, url=request.url, headers=headers, body=encoded)


class BasicAuth(httpx.Auth):
    """HTTP Basic: ``Authorization: Basic base64(username:password)``."""

    def __init__(self, link_name: str, username: SecretStr, password: SecretStr) -> None:
        self._link_name = link_name
        self._username = username
        self._password = password

    def __repr__(self) -> str:
        return f"BasicAuth({self._link_name!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        pair = f"{self._username.get_secret_value()}:{self._password.get_secret_value()}"
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        yield request


_OAUTH1_SIGNATURE_TYPES = {
    "header": SIGNATURE_TYPE_HEADER,
    "query": SIGNATURE_TYPE_QUERY,
    "form": SIGNATURE_TYPE_BODY,
}


class OAuth1Auth(httpx.Auth):
    """Signs each request with OAuth 1.0a HMAC-SHA1 (authlib's RFC 5849 client)."""

    requires_request_body = True

    def __init__(
        self,
        link_name: str,
        *,
        consumer_key: str,
        consumer_secret: SecretStr,
        token: str | None = None,
        token_secret: SecretStr | None = None,
        placement: str = "header",
        callback: str | None = None,
        verifier: str | None = None,
    ) -> None:
        self._link_name = link_name
        self._consumer_key = consumer_key
        self._consumer_secret = consumer_secret
        self._token = token
        self._token_secret = token_secret
        self._signature_type = _OAUTH1_SIGNATURE_TYPES[placement]
        self._callback = callback
        self._verifier = verifier

    def __repr__(self) -> str:
        return f"OAuth1Auth({self._link_name!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        signer = OAuth1ClientAuth(
            self._consumer_key,
            client_secret=self._consumer_secret.get_secret_value(),
            token=self._token,
            token_secret=self._token_secret.get_secret_value() if self._token_secret else None,
            redirect_uri=self._callback,
            verifier=self._verifier,
            signature_type=self._signature_type,
        )
        # authlib looks headers up by their canonical case ("Content-Type").
        original = {
            key.decode("latin-1").title(): value.decode("latin-1")
            for key, value in request.headers.raw
        }
        url, headers, body = signer.prepare(
            request.method, str(request.url), original, request.content
        )
        body_bytes = body.encode("utf-8") if isinstance(body, str) else bytes(body or b"")
        yield _rebuild(request, url=url, headers=headers, body=body_bytes)


class TokenSource(Protocol):
    """Where :class:`OAuth2Auth` gets access tokens from."""

    def access_token(self) -> str:
        """A token that is valid for at least the refresh margin (refreshing if needed)."""
        ...

    def refreshed_token(self, stale: str) -> str | None:
        """A token other than ``stale``, which the resource server just refused; ``None``
        when refreshing would not help (``stale`` was fetched moments ago)."""
        ...


class OAuth2Auth(httpx.Auth):
    """Bearer-style OAuth 2.0: add token → send → on 401 refresh once → resend.

    When the token source declines the refresh, the 401 goes back to the caller.
    """

    requires_request_body = True  # the body must be replayable for the resend

    def __init__(
        self,
        link_name: str,
        source: TokenSource,
        *,
        placement: str = "header",
        prefix: str = "Bearer",
        param: str = "access_token",
    ) -> None:
        self._link_name = link_name
        self._source = source
        self._placement = placement
        self._prefix = prefix
        self._param = param

    def __repr__(self) -> str:
        return f"OAuth2Auth({self._link_name!r}, placement={self._placement!r})"

    def _apply(self, request: httpx.Request, token: str) -> None:
        if self._placement == "query":
            request.url = request.url.copy_set_param(self._param, token)
        else:
            request.headers["Authorization"] = f"{self._prefix} {token}".strip()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._source.access_token()
        self._apply(request, token)
        response = yield request
        if response.status_code == httpx.codes.UNAUTHORIZED:
            fresh = self._source.refreshed_token(stale=token)
            if fresh is None:
                return
            self._apply(request, fresh)
            yield request
