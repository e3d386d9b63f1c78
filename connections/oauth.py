"""Token endpoint protocol: OAuth 2.0 grants and revocation, OAuth 1.0a token requests.

Replies are judged by their body as well as their status: Zoho (and Slack, GitHub) answer
errors with HTTP 200 and a JSON ``error``. Failures are sorted into three kinds:

* transient (network, 429, 5xx, Zoho's "too many requests"): :class:`TransientTokenError`,
  which the worker retries;
* the grant is gone (``invalid_grant``, revoked consent …): :class:`GrantRevokedError`,
  which makes the connection *needs reconnect*;
* deskwire's own client credentials were refused (``invalid_client``,
  ``unauthorized_client`` …): :class:`~connections.errors.ClientAuthError`, a configuration
  error that leaves the stored grant alone, so fixing the environment recovers;
* anything else: :class:`TokenRequestError`.

Every call may be given a ``deadline`` (``time.monotonic()`` value): the whole exchange,
however slowly the server answers, is given up at that moment (httpx's timeouts apply per
phase and per read, so one call could otherwise outlast the refresh lock that guards it).

Messages carry the provider's error code and description, never a token or a full URL.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
from pydantic import SecretStr

from connections.auth import OAuth1Auth
from connections.errors import (
    ClientAuthError,
    ConnectionsError,
    TokenRequestError,
    TransientTokenError,
)
from connections.retry_after import retry_after_seconds
from connections.transport import safe_url

__all__ = [
    "CLIENT_AUTH_CODES",
    "GrantRevokedError",
    "TokenReply",
    "fetch_oauth1_token",
    "request_token",
    "revoke_token",
]

# Error codes after which only a person can fix things by connecting again.
REVOKED_GRANT_CODES = frozenset(
    {
        "invalid_grant",
        "invalid_code",
        "invalid_token",
        "access_denied",
        "consent_required",
        "interaction_required",
        "token_revoked",
        "token_expired",
        "invalid_refresh_token",
        "invalid_auth",
        "bad_verification_code",
    }
)
# Error codes that say deskwire's client id / secret (or its registration) is wrong: a
# configuration error that says nothing about the stored grant.
CLIENT_AUTH_CODES = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "incorrect_client_credentials",
        "invalid_client_secret",
    }
)
TRANSIENT_CODES = frozenset({"temporarily_unavailable", "server_error", "slow_down", "ratelimited"})
_SAFE_META = ("api_domain", "token_type", "scope", "instance_url", "team", "bot_user_id")


class GrantRevokedError(ConnectionsError):
    """The provider refused the grant for good (``code`` is its error code)."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description
        super().__init__(f"{code}: {description}" if description else code)


@dataclass(frozen=True)
class TokenReply:
    """A successful token response; secrets wrapped."""

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    expires_in: float | None = None
    token_secret: SecretStr | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def _short(text: Any, limit: int = 200) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _parse_body(response: httpx.Response) -> dict[str, Any] | None:
    text = response.text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = response.json()
        except ValueError:
            return None
        return value if isinstance(value, dict) else None
    pairs = parse_qsl(text, keep_blank_values=True)
    if pairs and all(key for key, _ in pairs) and "<" not in text:
        return dict(pairs)
    return None


def _judge(response: httpx.Response, *, link_name: str, what: str, url: str) -> dict[str, Any]:
    """The parsed body of a good reply; otherwise raise the right kind of error."""
    where = f"{what} for connection '{link_name}' at {safe_url(url)}"
    if response.status_code == httpx.codes.TOO_MANY_REQUESTS or response.status_code >= 500:
        raise TransientTokenError(
            f"{where} failed with HTTP {response.status_code}; will retry",
            retry_after=retry_after_seconds(response),
        )
    body = _parse_body(response)
    if body is None:
        raise TokenRequestError(
            f"{where} answered HTTP {response.status_code} with a body that is neither JSON "
            "nor form data"
        )
    error = body.get("error")
    if error is None and body.get("ok") is False:  # Slack
        error = "unknown_error"
    if error:
        code = str(error)
        description = _short(body.get("error_description") or body.get("message") or "")
        lowered = f"{code} {description}".lower()
        if "too many requests" in lowered or code.lower() in TRANSIENT_CODES:
            raise TransientTokenError(
                f"{where} is rate limited: {code}: {description}".rstrip(": "),
                retry_after=retry_after_seconds(response),
            )
        normalised = code.lower().replace(" ", "_")
        if normalised in CLIENT_AUTH_CODES:
            raise _client_auth_error(link_name, where, code, description)
        if normalised in REVOKED_GRANT_CODES:
            raise GrantRevokedError(code, description)
        raise TokenRequestError(
            f"{where} failed: {code}" + (f": {description}" if description else "")
        )
    if response.status_code >= 400:
        raise TokenRequestError(f"{where} failed with HTTP {response.status_code}")
    return body


def _client_auth_error(link_name: str, where: str, code: str, description: str) -> ClientAuthError:
    said = code + (f": {description}" if description else "")
    return ClientAuthError(
        link_name,
        f"{where} was refused ({said}): the provider did not accept deskwire's client "
        f"credentials; check client_id/client_secret of connection '{link_name}' in "
        "deskwire's environment (and that this client may use the grant). The stored grant "
        "is kept: once the environment is fixed the connection works again",
    )


def _capped(timeout: httpx.Timeout, limit: float) -> httpx.Timeout:
    """``timeout`` with no phase longer than ``limit`` seconds."""

    def cap(value: float | None) -> float:
        return limit if value is None else min(value, limit)

    return httpx.Timeout(
        connect=cap(timeout.connect),
        read=cap(timeout.read),
        write=cap(timeout.write),
        pool=cap(timeout.pool),
    )


def _post(
    http: httpx.Client,
    url: str,
    *,
    link_name: str,
    what: str,
    deadline: float | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """POST, giving up (transiently) on network trouble or when ``deadline`` passes.

    With a deadline the request runs in a helper thread that the caller stops waiting for
    at the deadline; its phases are capped at the time left, so it ends soon after.
    """
    where = f"{what} for connection '{link_name}' at {safe_url(url)}"
    try:
        if deadline is None:
            return http.post(url, **kwargs)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientTokenError(f"{where} was not sent: no time was left for it; will retry")
        kwargs["timeout"] = _capped(http.timeout, remaining)
        replies: list[httpx.Response] = []
        failures: list[Exception] = []

        def send() -> None:
            try:
                replies.append(http.post(url, **kwargs))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                failures.append(exc)

        worker = threading.Thread(target=send, name="deskwire-token-request", daemon=True)
        worker.start()
        worker.join(remaining)
        if worker.is_alive():
            raise TransientTokenError(
                f"{where} took longer than {remaining:.1f} s in all and was given up; will retry"
            )
        if failures:
            raise failures[0]
        if not replies:
            raise TransientTokenError(f"{where} ended without a reply; will retry")
        return replies[0]
    except httpx.TimeoutException as exc:
        raise TransientTokenError(f"{where} timed out ({type(exc).__name__}); will retry") from None
    except httpx.TransportError as exc:
        raise TransientTokenError(
            f"{where} could not be sent ({type(exc).__name__}); will retry"
        ) from None


def _client_auth(
    form: dict[str, str], headers: dict[str, str], client_id: str, secret: SecretStr, method: str
) -> None:
    if method == "basic":
        pair = f"{quote(client_id, safe='')}:{quote(secret.get_secret_value(), safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form["client_id"] = client_id
        form["client_secret"] = secret.get_secret_value()


def request_token(
    http: httpx.Client,
    *,
    link_name: str,
    url: str,
    form: Mapping[str, str],
    client_id: str,
    client_secret: SecretStr,
    client_auth: str = "post",
    what: str = "token request",
    deadline: float | None = None,
) -> TokenReply:
    """POST a grant to a token endpoint and judge the reply (all by ``deadline``)."""
    body = dict(form)
    headers = {"Accept": "application/json"}
    _client_auth(body, headers, client_id, client_secret, client_auth)
    response = _post(
        http, url, link_name=link_name, what=what, deadline=deadline, data=body, headers=headers
    )
    data = _judge(response, link_name=link_name, what=what, url=url)
    access = data.get("access_token")
    if not access:
        raise TokenRequestError(
            f"{what} for connection '{link_name}' at {safe_url(url)} returned no access_token"
        )
    expires_in: float | None
    try:
        expires_in = float(data["expires_in"]) if data.get("expires_in") not in (None, "") else None
    except (TypeError, ValueError):
        expires_in = None
    refresh = data.get("refresh_token")
    return TokenReply(
        access_token=SecretStr(str(access)),
        refresh_token=SecretStr(str(refresh)) if refresh else None,
        expires_in=expires_in,
        meta={key: data[key] for key in _SAFE_META if isinstance(data.get(key), str)},
    )


def revoke_token(
    http: httpx.Client,
    *,
    link_name: str,
    url: str,
    style: str,
    token: SecretStr,
    token_type_hint: str,
    client_id: str | None,
    client_secret: SecretStr | None,
    client_auth: str = "post",
    deadline: float | None = None,
) -> None:
    """Revoke a token at the provider: ``form`` (RFC 7009), ``query`` (Zoho) or ``bearer``."""
    headers = {"Accept": "application/json"}
    what = "token revocation"
    if style == "query":
        response = _post(
            http,
            url,
            link_name=link_name,
            what=what,
            deadline=deadline,
            params={"token": token.get_secret_value()},
            headers=headers,
        )
    elif style == "bearer":
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        response = _post(
            http, url, link_name=link_name, what=what, deadline=deadline, headers=headers
        )
    else:
        form = {"token": token.get_secret_value(), "token_type_hint": token_type_hint}
        if client_id and client_secret:
            _client_auth(form, headers, client_id, client_secret, client_auth)
        response = _post(
            http, url, link_name=link_name, what=what, deadline=deadline, data=form, headers=headers
        )
    _judge(response, link_name=link_name, what=what, url=url)


def fetch_oauth1_token(
    http: httpx.Client,
    *,
    link_name: str,
    url: str,
    consumer_key: str,
    consumer_secret: SecretStr,
    placement: str,
    token: str | None = None,
    token_secret: SecretStr | None = None,
    callback: str | None = None,
    verifier: str | None = None,
    what: str,
    deadline: float | None = None,
) -> TokenReply:
    """The request-token or access-token step of OAuth 1.0a (form-encoded reply)."""
    auth = OAuth1Auth(
        link_name,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        token=token,
        token_secret=token_secret,
        placement=placement,
        callback=callback,
        verifier=verifier,
    )
    response = _post(
        http,
        url,
        link_name=link_name,
        what=what,
        deadline=deadline,
        auth=auth,
        headers={"Accept": "application/x-www-form-urlencoded, application/json"},
    )
    data = _judge(response, link_name=link_name, what=what, url=url)
    oauth_token = data.get("oauth_token")
    oauth_secret = data.get("oauth_token_secret")
    if not oauth_token or not oauth_secret:
        raise TokenRequestError(
            f"{what} for connection '{link_name}' returned no oauth_token/oauth_token_secret"
        )
    return TokenReply(
        access_token=SecretStr(str(oauth_token)),
        token_secret=SecretStr(str(oauth_secret)),
        meta={"issued_at": int(time.time())},
    )
