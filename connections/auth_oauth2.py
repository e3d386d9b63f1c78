"""OAuth 2.0: the code flow with state and PKCE, client credentials, refresh, revoke.

:class:`OAuth2Strategy` connects an :class:`~connections.specs.OAuth2Connection` by the
authorization code grant (a browser redirect; Zoho's ``location`` and ``accounts-server``
honoured), by client credentials (a token fetched on first use) or from a refresh token,
and hands out :class:`~connections.auth.OAuth2Auth` with a token source that refreshes
under the lock of :mod:`connections.refresh`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pydantic import SecretStr

from connections import refresh
from connections.auth import OAuth2Auth
from connections.auth_strategy import ProviderRevoke, StrategyBase
from connections.errors import ConnectionsError, NotConnectedError, OAuthCallbackError
from connections.oauth import GrantRevokedError, TokenReply, request_token, revoke_token
from connections.results import ConnectAttempt
from connections.specs import SCOPE_DELIMITERS, OAuth2Connection, present
from connections.store import AuthState, StoredToken, TokenStatus, digest

if TYPE_CHECKING:
    from connections.credentials import CredentialKeeper

__all__ = ["OAuth2Strategy"]


class _Tokens:
    """The :class:`~connections.auth.TokenSource` of one (connection, user).

    ``first``: the row just read for this request (its first token is taken from it rather
    than from a second read); later tokens are read from the store.
    """

    def __init__(
        self, strategy: OAuth2Strategy, user_key: str, first: StoredToken | None = None
    ) -> None:
        self._strategy = strategy
        self._user_key = user_key
        self._first = first

    def access_token(self) -> str:
        keeper, spec = self._strategy.keeper, self._strategy.spec
        record, self._first = self._first or keeper.usable(spec, self._user_key), None
        if record.access_token is not None and not record.expiring(keeper.refresh_margin):
            return record.access_token.get_secret_value()
        stale = record.access_token.get_secret_value() if record.access_token else None
        token = self._strategy.refreshed(self._user_key, stale=stale, force=False, min_age=None)
        assert token is not None  # only a min_age skips
        return token

    def refreshed_token(self, stale: str) -> str | None:
        return self._strategy.refreshed(
            self._user_key,
            stale=stale,
            force=True,
            min_age=self._strategy.keeper.refresh_on_401_after,
        )


class OAuth2Strategy(StrategyBase):
    """Connect, refresh, apply and revoke the credentials of an OAuth 2.0 connection."""

    def __init__(self, keeper: CredentialKeeper, spec: OAuth2Connection) -> None:
        super().__init__(keeper, spec)
        self.spec: OAuth2Connection = spec

    def _client(self) -> tuple[str, SecretStr]:
        link = self.spec.link_name
        return (
            present(self.spec.client_id, link, "client_id"),
            present(self.spec.client_secret, link, "client_secret"),
        )

    # ---- applying ------------------------------------------------------------------------

    def auth_with(self, user_key: str, record: StoredToken | None) -> httpx.Auth:
        """A bearer token (or query parameter) that refreshes itself when due or on a 401."""
        service = self.spec.service
        return OAuth2Auth(
            self.spec.link_name,
            _Tokens(self, user_key, record),
            placement=service.token_placement,
            prefix=service.token_prefix,
            param=service.token_param,
        )

    # ---- refreshing ----------------------------------------------------------------------

    def refreshed(
        self, user_key: str, *, stale: str | None, force: bool, min_age: float | None
    ) -> str | None:
        """A usable access token, refreshed if needed (see :func:`refresh.refresh_or_skip`)."""
        return refresh.refresh_or_skip(
            self.keeper,
            self.spec,
            user_key,
            lambda record, deadline: self._grant(user_key, record, deadline),
            stale=stale,
            force=force,
            min_age=min_age,
        )

    def refresh(self, user_key: str) -> None:
        """Fetch a new access token now: checks the grant, connects client credentials."""
        record = self.keeper.usable(self.spec, user_key)
        stale = record.access_token.get_secret_value() if record.access_token else None
        self.refreshed(user_key, stale=stale, force=True, min_age=None)

    def _grant(self, user_key: str, record: StoredToken, deadline: float) -> TokenReply:
        """Ask the token endpoint for a new access token (refresh or client credentials).

        A refused grant raises what :func:`refresh.refused` returns; a refused client
        (``invalid_client`` …) raises :class:`~connections.errors.ClientAuthError` and
        keeps the grant.
        """
        spec = self.spec
        client_id, client_secret = self._client()
        form: dict[str, str]
        if spec.grant_type == "client_credentials":
            form = {"grant_type": "client_credentials"}
            if spec.scopes:
                form["scope"] = spec.scope_string
            url = spec.token_url
            what = "client credentials token request"
        else:
            if record.refresh_token is None:
                reason = "the access token expired or was refused and there is no refresh token"
                raise refresh.refused(self.keeper, spec, user_key, record, reason)
            form = {
                "grant_type": "refresh_token",
                "refresh_token": record.refresh_token.get_secret_value(),
            }
            url = record.meta.get("token_url") or spec.refresh_url or spec.token_url
            what = "token refresh"
        try:
            return request_token(
                self.keeper.token_http(),
                link_name=spec.link_name,
                url=str(present(url, spec.link_name, "token_url")),
                form=form,
                client_id=client_id,
                client_secret=client_secret,
                client_auth=spec.service.client_auth,
                what=what,
                deadline=deadline,
            )
        except GrantRevokedError as exc:
            raise refresh.refused(self.keeper, spec, user_key, record, exc.code) from None

    # ---- refresh token from the file or the CLI --------------------------------------------

    def bootstrap(self, token: SecretStr | None, user_key: str) -> None:
        """Connect from a refresh token (e.g. a Zoho Self Client's), tried at once."""
        spec = self.spec
        if spec.grant_type != "authorization_code":
            super().bootstrap(token, user_key)  # refuses
            return
        token = token or spec.refresh_token
        if token is None:
            raise NotConnectedError(
                f"no refresh token given for connection '{spec.link_name}', and none is set in "
                "the connections file (refresh_token: ${ENV_NAME})"
            )
        self._bootstrap(user_key, token)

    def _bootstrap(self, user_key: str, token: SecretStr) -> None:
        refresh.bootstrap(
            self.keeper,
            self.spec,
            user_key,
            token,
            lambda record, deadline: self._grant(user_key, record, deadline),
        )

    def bootstrap_if_due(self, user_key: str, record: StoredToken | None) -> bool:
        """Redeem the file's refresh token when it is new (shared connections only)."""
        token = self.spec.refresh_token
        if token is None or user_key:
            return False
        if record is not None:
            fresh = digest(token.get_secret_value()) != record.bootstrap_digest
            # A new token in the environment replaces one bootstrapped before, and revives
            # a revoked connection; it does not override a connection made by the code flow.
            replaces = record.bootstrap_digest is not None or record.status != "connected"
            if not (fresh and replaces):
                return False
        self._bootstrap(user_key, token)
        return True

    # ---- the code flow -------------------------------------------------------------------

    def begin_connect(self, user_key: str) -> ConnectAttempt:
        """The authorize URL with state, PKCE S256 and the scopes; the state is remembered."""
        spec = self.spec
        if spec.grant_type != "authorization_code":
            return super().begin_connect(user_key)
        authorize_url = present(spec.authorize_url, spec.link_name, "authorize_url")
        client_id, _ = self._client()
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        params: dict[str, str] = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": self.keeper.redirect_uri,
            "state": state,
        }
        if spec.service.pkce:
            params["code_challenge"] = create_s256_code_challenge(verifier)
            params["code_challenge_method"] = "S256"
        params.update(spec.service.authorize_params)
        query = urlencode(params, quote_via=quote)
        if spec.scopes:
            # comma and space are percent-encoded; "plus" joins with a literal +.
            joined = [quote(scope, safe="") for scope in spec.scopes]
            separator = (
                "+"
                if spec.scope_delimiter == "plus"
                else quote(SCOPE_DELIMITERS[spec.scope_delimiter], safe="")
            )
            query += "&scope=" + separator.join(joined)
        self.keeper.store.put_state(
            state,
            link_name=spec.link_name,
            user_key=user_key,
            redirect_uri=self.keeper.redirect_uri,
            secret={"code_verifier": verifier, "kind": "oauth2"},
            ttl=self.keeper.STATE_TTL,
        )
        separator = "&" if "?" in authorize_url else "?"
        return ConnectAttempt(f"{authorize_url}{separator}{query}", state)

    def complete_connect(self, pending: AuthState, query: Mapping[str, str]) -> None:
        """Exchange the callback's code (at the accounts server Zoho names) for tokens."""
        spec = self.spec
        if query.get("error"):
            description = " ".join(str(query.get("error_description", "")).split())[:200]
            raise OAuthCallbackError(
                f"the provider refused connection '{spec.link_name}': {query['error']}"
                + (f" ({description})" if description else "")
            )
        code = query.get("code")
        if not code:
            raise OAuthCallbackError(
                f"the callback for connection '{spec.link_name}' has no code; start again"
            )
        self.keeper.require_configured(spec)
        client_id, client_secret = self._client()
        token_url, meta = self._zoho_server(query)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
        }
        if spec.service.pkce and pending.secret.get("code_verifier"):
            form["code_verifier"] = pending.secret["code_verifier"]
        try:
            reply = request_token(
                self.keeper.token_http(),
                link_name=spec.link_name,
                url=token_url,
                form=form,
                client_id=client_id,
                client_secret=client_secret,
                client_auth=spec.service.client_auth,
                what="code exchange",
                deadline=self.keeper.deadline(),
            )
        except GrantRevokedError as exc:
            raise OAuthCallbackError(
                f"connection '{spec.link_name}': the provider refused the code ({exc}); start "
                "the connect again"
            ) from None
        empty = self.keeper.empty_record(spec, pending.user_key)
        refresh.store_reply(self.keeper, spec, pending.user_key, empty, reply, meta=meta)

    def _zoho_server(self, query: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
        """The token URL for a code exchange, and what to remember about the data centre."""
        spec = self.spec
        token_url = present(spec.token_url, spec.link_name, "token_url")
        centres = spec.service.data_centres
        if not centres:
            return token_url, {}
        meta: dict[str, Any] = {}
        location = str(query.get("location", "")).lower()
        if location in centres:
            meta["data_centre"] = location
        server = query.get("accounts-server")
        if not server:
            return token_url, meta
        server = server.rstrip("/")
        allowed = {dc.accounts_url.rstrip("/") for dc in centres.values()}
        if spec.accounts_url:
            allowed.add(spec.accounts_url.rstrip("/"))
        if server not in allowed:
            raise OAuthCallbackError(
                f"the callback for connection '{spec.link_name}' names accounts server "
                f"{httpx.URL(server).host or server!r}, which is not a known Zoho accounts "
                "server; the code was not exchanged"
            )
        for key, centre in centres.items():
            if centre.accounts_url.rstrip("/") == server:
                meta.setdefault("data_centre", key)
        named = f"{server}/oauth/v2/token"
        if named != token_url:
            meta["token_url"] = named
        return named, meta

    # ---- revoking ------------------------------------------------------------------------

    def revoke_at_provider(self, records: Sequence[StoredToken]) -> ProviderRevoke:
        """Revoke each connected grant at the service's revoke URL, if it has one."""
        spec = self.spec
        if not spec.revoke_url or spec.problem is not None:
            return None, []
        confirmed: bool | None = None
        notes: list[str] = []
        for record in records:
            token = record.refresh_token or record.access_token
            if record.status != TokenStatus.CONNECTED or token is None:
                continue
            try:
                revoke_token(
                    self.keeper.token_http(),
                    link_name=spec.link_name,
                    url=spec.revoke_url,
                    style=spec.service.revoke_style,
                    token=token,
                    token_type_hint="refresh_token" if record.refresh_token else "access_token",
                    client_id=spec.client_id,
                    client_secret=spec.client_secret,
                    client_auth=spec.service.client_auth,
                    deadline=self.keeper.deadline(),
                )
                confirmed = True if confirmed is None else confirmed
            except ConnectionsError as exc:
                confirmed = False
                notes.append(str(exc))
        return confirmed, notes
