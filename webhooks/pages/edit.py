"""Editing a connection: its display name, and more scopes (which revokes it)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from connections import (
    ConnectionSpec,
    EditCheck,
    NotEditableError,
    OAuth2Connection,
    check_connection_edit,
    fixed_edit_problems,
)
from connections.config import NAME_MAX
from webhooks.pages.blueprint import bp, facade
from webhooks.pages.files import FileEditError, adopt_connection, write_connection_edit
from webhooks.pages.problems import problem_page

__all__ = ["edit"]

log = logging.getLogger(__name__)

_SCOPE_SPLIT = re.compile(r"[\s,]+")


def _proposed(spec: ConnectionSpec, form: Mapping[str, str]) -> tuple[ConnectionSpec, list[str]]:
    """The connection as the form would have it, and the form's own problems.

    Read-only fields (link name, auth type, grant type) are part of the form; a changed one
    is refused with the seeds' reason (:func:`fixed_edit_problems`).
    """
    problems = fixed_edit_problems(
        spec,
        link_name=form.get("link_name", spec.link_name),
        service=spec.service.key,
        auth=form.get("auth", spec.auth),
        grant_type=form.get("grant_type", spec.token_grant),
    )
    name = " ".join(form.get("name", "").split())
    if not name:
        problems.append("the display name cannot be empty")
    elif len(name) > NAME_MAX:
        problems.append(f"the display name has {len(name)} characters; at most {NAME_MAX}")
    name = name or spec.name
    given = list(dict.fromkeys(s for s in _SCOPE_SPLIT.split(form.get("scopes", "")) if s))
    if not isinstance(spec, OAuth2Connection):
        if given:
            problems.append(f"scopes apply to OAuth 2.0 connections; this one uses {spec.auth}")
        return replace(spec, name=name), problems
    scopes = spec.scopes
    if "scopes" in form:
        # Keep the declared order; new scopes go last. A missing one stays missing, so
        # the edit check sees (and refuses) the removal.
        kept = [s for s in spec.scopes if s in given]
        scopes = (*kept, *(s for s in given if s not in spec.scopes))
    return replace(spec, name=name, scopes=scopes), problems


@bp.route("/<link>/edit", methods=["GET", "POST"])
def edit(link: str) -> ResponseReturnValue:
    """Change the display name and add scopes (which revokes the connection)."""
    connections = facade()
    spec = connections.spec(link)
    if request.method == "GET":
        return render_template(
            "connections/edit.html",
            spec=spec,
            name=spec.name,
            scopes="\n".join(spec.token_scopes),
            problems=(),
        )
    proposed, problems = _proposed(spec, request.form)
    check: EditCheck | None = None
    if not problems:
        try:
            check = check_connection_edit(spec, proposed)
        except NotEditableError as exc:
            problems = list(exc.problems)
    if check is None or problems:
        body = render_template(
            "connections/edit.html",
            spec=spec,
            name=request.form.get("name", spec.name),
            scopes=request.form.get("scopes", "\n".join(spec.token_scopes)),
            problems=problems,
        )
        return body, 400
    if not check.changed:
        flash(f"{link}: nothing changed.", "ok")
        return redirect(url_for("connection_pages.detail", link=link), 303)
    edited = proposed
    try:
        write_connection_edit(
            connections.config.path,
            link,
            name=edited.name,
            scopes=edited.token_scopes if "scopes" in check.changed else None,
        )
    except FileEditError as exc:
        return problem_page(409, "Not saved", str(exc))
    adopt_connection(connections, edited)
    log.info("connection pages: %s edited (%s)", link, ", ".join(check.changed))
    flash(f"{link}: saved ({', '.join(check.changed)} changed).", "ok")
    if check.revokes and not spec.static_credentials:
        outcome = connections.revoke(link)
        flash(f"{link}: {check.reason}. {outcome.message}.", "warning")
    return redirect(url_for("connection_pages.detail", link=link), 303)
