"""OAuth 1.0a: request token, browser authorization, access token; signed requests.

:class:`OAuth1Strategy` connects an :class:`~connections.specs.OAuth1Connection` by the
three-legged flow and signs requests with :class:`~connections.auth.OAuth1Auth`. Its
tokens do not expire, so there is nothing to refresh, and OAuth 1.0a has no revoke
endpoint: revoking forgets the tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from connections.auth import OAuth1Auth
from connections.auth_strategy import StrategyBase
from connections.errors import OAuthCallbackError
from connections.oauth import GrantRevokedError, TokenReply, fetch_oauth1_token
from connections.results import ConnectAttempt
from connections.specs import OAuth1Connection, present
from connections.store import AuthState, StoredToken

if TYPE_CHECKING:
    from connections.credentials import CredentialKeeper

__all__ = ["STATE_PREFIX", "OAuth1Strategy"]

# A pending OAuth 1.0a connect is remembered under its request token, with this prefix.
STATE_PREFIX = "oauth1:"


class OAuth1Strategy(StrategyBase):
    """Connect and sign the requests of an OAuth 1.0a connection."""

    def __init__(self, keeper: CredentialKeeper, spec: OAuth1Connection) -> None:
        super().__init__(keeper, spec)
        self.spec: OAuth1Connection = spec

    def _consumer(self) -> tuple[str, SecretStr]:
        link = self.spec.link_name
        return (
            present(self.spec.consumer_key, link, "consumer_key"),
            present(self.spec.consumer_secret, link, "consumer_secret"),
        )

    def auth_with(self, user_key: str, record: StoredToken | None) -> httpx.Auth:
        """Signs each request with the consumer and the stored access token."""
        assert record is not None  # OAuth 1.0a credentials are always stored
        consumer_key, consumer_secret = self._consumer()
        return OAuth1Auth(
            self.spec.link_name,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            token=record.access_token.get_secret_value() if record.access_token else None,
            token_secret=record.token_secret,
            placement=self.spec.service.token_placement,
        )

    def _token(
        self,
        url: str,
        what: str,
        *,
        callback: str | None = None,
        token: str | None = None,
        token_secret: SecretStr | None = None,
        verifier: str | None = None,
    ) -> TokenReply:
        """One signed step of the flow: the request token, or the access token."""
        consumer_key, consumer_secret = self._consumer()
        return fetch_oauth1_token(
            self.keeper.token_http(),
            link_name=self.spec.link_name,
            url=url,
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            placement=self.spec.service.token_placement,
            callback=callback,
            token=token,
            token_secret=token_secret,
            verifier=verifier,
            what=what,
            deadline=self.keeper.deadline(),
        )

    def begin_connect(self, user_key: str) -> ConnectAttempt:
        """Fetch a request token and send the person to authorize it."""
        spec = self.spec
        authorize_url = present(spec.authorize_url, spec.link_name, "authorize_url")
        reply = self._token(
            present(spec.request_token_url, spec.link_name, "request_token_url"),
            "request token request",
            callback=self.keeper.redirect_uri,
        )
        request_token_value = reply.access_token.get_secret_value()
        token_secret = reply.token_secret
        assert token_secret is not None  # fetch_oauth1_token refuses a reply without one
        self.keeper.store.put_state(
            STATE_PREFIX + request_token_value,
            link_name=spec.link_name,
            user_key=user_key,
            redirect_uri=self.keeper.redirect_uri,
            secret={
                "kind": "oauth1",
                "request_token": request_token_value,
                "request_token_secret": token_secret.get_secret_value(),
            },
            ttl=self.keeper.STATE_TTL,
        )
        separator = "&" if "?" in authorize_url else "?"
        query = urlencode({"oauth_token": request_token_value})
        return ConnectAttempt(f"{authorize_url}{separator}{query}", request_token_value)

    def complete_connect(self, pending: AuthState, query: Mapping[str, str]) -> None:
        """Trade the authorized request token and its verifier for the access token."""
        spec = self.spec
        verifier = query.get("oauth_verifier")
        if not verifier:
            raise OAuthCallbackError(
                f"the callback for connection '{spec.link_name}' has no oauth_verifier; the "
                "authorization was denied or incomplete"
            )
        self.keeper.require_configured(spec)
        try:
            reply = self._token(
                present(spec.access_token_url, spec.link_name, "access_token_url"),
                "access token request",
                token=query["oauth_token"],
                token_secret=SecretStr(pending.secret["request_token_secret"]),
                verifier=verifier,
            )
        except GrantRevokedError as exc:
            raise OAuthCallbackError(
                f"connection '{spec.link_name}': the provider refused the verifier ({exc})"
            ) from None
        token_secret = reply.token_secret
        assert token_secret is not None  # fetch_oauth1_token refuses a reply without one
        self.keeper.save(
            spec,
            pending.user_key,
            {
                "access_token": reply.access_token.get_secret_value(),
                "token_secret": token_secret.get_secret_value(),
            },
            new_connection=True,
        )
