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

Which fields are compared, and whether a change of one revokes, is the metadata of the
fields of :mod:`connections.specs` (``EDIT_FREE`` / ``EDIT_REVOKES`` / ``EDIT_FIXED``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from connections.errors import NotEditableError
from connections.specs import (
    EDIT_FREE,
    EDIT_REVOKES,
    ApiKeyService,
    ConnectionSpec,
    OAuth2Service,
    ServiceSpec,
    edit_role,
)

__all__ = ["EditCheck", "check_connection_edit", "check_service_edit", "fixed_edit_problems"]


@dataclass(frozen=True)
class EditCheck:
    """An allowed edit: which fields change and whether it revokes the connection(s)."""

    changed: tuple[str, ...]
    revokes: bool
    reason: str | None = None


def _removed(old: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    return [item for item in old if item not in new]


def _changes(old: ConnectionSpec | ServiceSpec, new: object) -> tuple[list[str], list[str]]:
    """The fields that changed, free ones first, and which of them revoke (the spec types'
    field metadata says which is which)."""
    fields = dataclasses.fields(old)
    changed = {
        role: [
            f.name
            for f in fields
            if edit_role(f) == role and getattr(old, f.name) != getattr(new, f.name)
        ]
        for role in (EDIT_FREE, EDIT_REVOKES)
    }
    return changed[EDIT_FREE] + changed[EDIT_REVOKES], changed[EDIT_REVOKES]


def fixed_edit_problems(
    old: ConnectionSpec, *, link_name: str, service: str, auth: str, grant_type: str | None
) -> list[str]:
    """Why a connection cannot take this link name, service, auth type or grant type."""
    problems: list[str] = []
    if old.link_name != link_name:
        problems.append("the link name cannot be changed (create a new connection instead)")
    if old.service.key != service:
        problems.append(f"the service cannot be changed (it is {old.service.key})")
    if old.auth != auth:
        problems.append(f"the auth type cannot be changed (it is {old.auth})")
    if old.token_grant != grant_type:
        problems.append(f"the grant type cannot be changed (it is {old.token_grant})")
    return problems


def check_connection_edit(old: ConnectionSpec, new: ConnectionSpec) -> EditCheck:
    """Compare two versions of a connection; raise :class:`NotEditableError` if not allowed."""
    problems = fixed_edit_problems(
        old,
        link_name=new.link_name,
        service=new.service.key,
        auth=new.auth,
        grant_type=new.token_grant,
    )
    removed = _removed(old.token_scopes, new.token_scopes)
    if removed:
        problems.append("scopes can be added but not removed or edited: " + ", ".join(removed))
    if problems:
        raise NotEditableError(f"connection '{old.link_name}'", problems)
    changed, revoking = _changes(old, new)
    reason = None
    if "scopes" in revoking:
        added = ", ".join(s for s in new.token_scopes if s not in old.token_scopes)
        reason = f"scopes added ({added}): the connection is revoked and must be connected again"
    elif revoking:
        reason = f"{', '.join(revoking)} changed: the connection must be connected again"
    return EditCheck(changed=tuple(changed), revokes=bool(revoking), reason=reason)


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
    if isinstance(old, OAuth2Service) and isinstance(new, OAuth2Service):
        if old.grant_types != new.grant_types:
            grants = ", ".join(old.grant_types)
            problems.append(f"the grant type cannot be changed (it is {grants})")
        removed = _removed(old.scopes, new.scopes)
        if removed:
            problems.append("scopes can be added but not removed or edited: " + ", ".join(removed))
    if isinstance(old, ApiKeyService) and isinstance(new, ApiKeyService):
        deleted = _removed(tuple(p.name for p in old.params), tuple(p.name for p in new.params))
        if deleted:
            problems.append(
                "API key parameters can be added or edited, not deleted: " + ", ".join(deleted)
            )
    if problems:
        raise NotEditableError(f"service '{old.key}'", problems)
    changed, revoking = _changes(old, new)
    reason = (
        f"{', '.join(revoking)} changed: every connection of service '{old.key}' is revoked"
        if revoking
        else None
    )
    return EditCheck(changed=tuple(changed), revokes=bool(revoking), reason=reason)
