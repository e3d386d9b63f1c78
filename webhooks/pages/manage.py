"""Revoking a connection and deleting it (tokens and the file's declaration)."""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from connections import ConnectionInUseError
from webhooks.pages.blueprint import bp, facade, pages_setup
from webhooks.pages.files import FileEditError, forget_connection, remove_declaration

__all__ = ["delete", "revoke"]

log = logging.getLogger(__name__)


@bp.post("/<link>/revoke")
def revoke(link: str) -> ResponseReturnValue:
    """Revoke at the provider where possible, and forget the tokens."""
    user = (request.form.get("user") or "").strip() or None
    outcome = facade().revoke(link, user=user)
    log.info("connection pages: %s revoked: %s", link, outcome.message)
    flash(f"{link}: {outcome.message}.", "warning" if outcome.provider_revoked is False else "ok")
    return redirect(url_for("connection_pages.index"), 303)


@bp.route("/<link>/delete", methods=["GET", "POST"])
def delete(link: str) -> ResponseReturnValue:
    """Confirm, then revoke, forget the tokens and remove the declaration from the file."""
    connections = facade()
    spec = connections.spec(link)
    used_by = pages_setup().used_by()
    path = connections.config.path
    if request.method == "GET":
        rules = tuple(used_by.get(link, ()))
        return render_template("connections/delete.html", spec=spec, rules=rules, path=path)
    try:
        outcome = connections.delete(link, used_by)
    except ConnectionInUseError as exc:
        body = render_template(
            "connections/delete.html", spec=spec, rules=exc.rule_ids, path=path, refused=True
        )
        return body, 409
    try:
        removed = remove_declaration(path, link)
    except FileEditError as exc:
        flash(f"{link}: tokens forgotten, but the declaration stays: {exc}", "error")
        return redirect(url_for("connection_pages.index"), 303)
    if removed:
        forget_connection(connections, link)
        flash(f"{link}: deleted ({outcome.message}) and removed from {path}.", "ok")
    else:
        flash(f"{link}: tokens forgotten ({outcome.message}); {path} still declares it.", "ok")
    log.info("connection pages: %s deleted (declaration removed: %s)", link, removed)
    return redirect(url_for("connection_pages.index"), 303)
