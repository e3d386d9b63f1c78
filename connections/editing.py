"""What may change on a service or a connection, after the seeds' editing rules.

* Never: a link name, a service's auth type or grant type, a connection's service.
* API key services: parameters may be added and edited, not deleted.
* OAuth 2.0 scopes (of a service or a connection) may be added, not removed or edited;
  adding one revokes the connection (its tokens were granted for the old scopes).
* Any other change to how a custom service authenticates revokes its connections. A change
  of display name or description revokes nothing.

The pages and the CLI call these before they write a new ``connections.yml``; the facade
itself also notices a scope, auth or grant change against what the stored tokens were
granted for and treats that connection as revoked.
"""

from __future__ import annotations

from dataclasses import dataclass

from connections.config import ConnectionSpec, ServiceSpec
from connections.errors import NotEditableError

__all__ = ["EditCheck", "check_connection_edit", "check_service_edit"]

_COSMETIC = frozenset({"name", "description", "file", "line", "accept"})
_CONNECTION_REVOKING = (
    "scopes",
    "scope_delimiter",
    "per_user",
    "client_id",
    "client_secret",
    "consumer_key",
    "consumer_secret",
    "data_centre",
    "accounts_url",
    "tenant",
    "authorize_url",
    "token_url",
    "refresh_url",
    "request_token_url",
    "access_token_url",
)
_CONNECTION_FREE = ("name", "portal", "base_url", "hosts", "accept", "values", "refresh_token")
_SERVICE_FIELDS = (
    "token_placement",
    "token_prefix",
    "token_param",
    "client_auth",
    "scope_delimiter",
    "scopes",
    "authorize_url",
    "token_url",
    "refresh_url",
    "revoke_url",
    "revoke_style",
    "request_token_url",
    "access_token_url",
    "authorize_params",
    "pkce",
    "params",
    "base_url",
    "hosts",
    "client_id",
    "client_secret",
    "consumer_key",
    "consumer_secret",
)


@dataclass(frozen=True)
class EditCheck:
    """An allowed edit: which fields change and whether it revokes the connection(s)."""

    changed: tuple[str, ...]
    revokes: bool
    reason: str | None = None


def _removed(old: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    return [item for item in old if item not in new]


def check_connection_edit(old: ConnectionSpec, new: ConnectionSpec) -> EditCheck:
    """Compare two versions of a connection; raise :class:`NotEditableError` if not allowed."""
    problems: list[str] = []
    if old.link_name != new.link_name:
        problems.append("the link name cannot be changed (create a new connection instead)")
    if old.service.key != new.service.key:
        problems.append(f"the service cannot be changed (it is {old.service.key})")
    if old.auth != new.auth:
        problems.append(f"the auth type cannot be changed (it is {old.auth})")
    if old.grant_type != new.grant_type:
        problems.append(f"the grant type cannot be changed (it is {old.grant_type})")
    removed = _removed(old.scopes, new.scopes)
    if removed:
        problems.append("scopes can be added but not removed or edited: " + ", ".join(removed))
    if problems:
        raise NotEditableError(f"connection '{old.link_name}'", problems)
    changed = tuple(
        name
        for name in (*_CONNECTION_FREE, *_CONNECTION_REVOKING)
        if getattr(old, name) != getattr(new, name)
    )
    revoking = [name for name in changed if name in _CONNECTION_REVOKING]
    reason = None
    if "scopes" in revoking:
        added = ", ".join(s for s in new.scopes if s not in old.scopes)
        reason = f"scopes added ({added}): the connection is revoked and must be connected again"
    elif revoking:
        reason = f"{', '.join(revoking)} changed: the connection must be connected again"
    return EditCheck(changed=changed, revokes=bool(revoking), reason=reason)


def check_service_edit(old: ServiceSpec, new: ServiceSpec) -> EditCheck:
    """Compare two versions of a custom service; raise :class:`NotEditableError` if not allowed.

    Any change besides the display name revokes every connection of the service.
    """
    problems: list[str] = []
    if old.builtin:
        problems.append("built-in services cannot be edited")
    if old.key != new.key:
        problems.append("the service link name cannot be changed")
    if old.auth != new.auth:
        problems.append(f"the auth type cannot be changed (it is {old.auth})")
    if old.grant_types != new.grant_types:
        problems.append(f"the grant type cannot be changed (it is {', '.join(old.grant_types)})")
    deleted = _removed(tuple(p.name for p in old.params), tuple(p.name for p in new.params))
    if deleted:
        problems.append(
            "API key parameters can be added or edited, not deleted: " + ", ".join(deleted)
        )
    removed = _removed(old.scopes, new.scopes)
    if removed:
        problems.append("scopes can be added but not removed or edited: " + ", ".join(removed))
    if problems:
        raise NotEditableError(f"service '{old.key}'", problems)
    changed = tuple(
        name for name in ("name", *_SERVICE_FIELDS) if getattr(old, name) != getattr(new, name)
    )
    revoking = [name for name in changed if name not in _COSMETIC]
    reason = (
        f"{', '.join(revoking)} changed: every connection of service '{old.key}' is revoked"
        if revoking
        else None
    )
    return EditCheck(changed=changed, revokes=bool(revoking), reason=reason)
