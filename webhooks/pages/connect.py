"""Connecting: the connect page and its form, and the OAuth callback.

A browser connect starts with a POST (with the CSRF token) and its callback is only taken
in the browser session that started it (see :mod:`webhooks.pages.security`). The forms for
API keys and passwords are never filled back in.
"""

from __future__ import annotations

import logging

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from connections import (
    Connections,
    ConnectionsError,
    ConnectionSpec,
    NotConfiguredError,
    UnknownConnectionError,
    UnsupportedOperationError,
)
from webhooks.pages.blueprint import bp, facade
from webhooks.pages.problems import problem_page
from webhooks.pages.security import connect_started_here, remember_connect

__all__ = ["callback", "connect"]

log = logging.getLogger(__name__)


def _connect_kind(spec: ConnectionSpec) -> str:
    return spec.connect_kind.value


def _static_fields(spec: ConnectionSpec) -> list[tuple[str, str, bool]]:
    """(parameter name, label, secret) of each value an api_key/basic connection needs."""
    return [(field.name, field.label, field.secret) for field in spec.credential_fields]


def _connect_page(
    spec: ConnectionSpec, kind: str, *, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    body = render_template(
        "connections/connect.html",
        spec=spec,
        kind=kind,
        fields=_static_fields(spec) if kind == "form" else [],
        error=error,
        user=request.values.get("user", ""),
    )
    return body, status


@bp.route("/<link>/connect", methods=["GET", "POST"])
def connect(link: str) -> ResponseReturnValue:
    """GET: the connect page, whose form POSTs (with the CSRF token) to the same URL.

    POST: OAuth: start the attempt, remember it in the session, redirect to the provider.
    API key / Basic: store the form's values. Client credentials: fetch a token.
    """
    connections = facade()
    spec = connections.spec(link)
    if spec.problem:
        raise NotConfiguredError(
            f"connection '{link}' is not configured: {spec.problem} in deskwire's "
            "environment and restart deskwire"
        )
    if spec.static_credentials:
        raise UnsupportedOperationError(
            f"connection '{link}' takes its credentials from the connections file (values:); "
            "change them there"
        )
    kind = _connect_kind(spec)
    user = (request.values.get("user") or "").strip() or None
    if request.method == "GET":
        # Never starts anything: a link from another site only shows this page.
        return _connect_page(spec, kind)
    if kind == "redirect":
        if spec.per_user and user is None:
            return _connect_page(spec, kind, error="Say which user connects.", status=400)
        attempt = connections.begin_connect(link, user=user)
        remember_connect(attempt.key)
        log.info("connection pages: connect %s started (redirect to the provider)", link)
        return redirect(attempt.url, 303)
    if kind == "client_credentials":
        status = connections.refresh(link, user=user)
        flash(f"{link}: {status.message}", "ok")
        return redirect(url_for("connection_pages.index"), 303)
    values = {name: request.form.get(f"value-{name}", "") for name, _, _ in _static_fields(spec)}
    try:
        status = connections.connect_static(link, values, user=user)
    except (UnsupportedOperationError, UnknownConnectionError):
        raise
    except ConnectionsError as exc:
        return _connect_page(spec, kind, error=str(exc), status=400)
    log.info("connection pages: %s connected from the form", link)
    flash(f"{link}: {status.message}.", "ok")
    return redirect(url_for("connection_pages.index"), 303)


@bp.get("/callback")
def callback() -> ResponseReturnValue:
    """Where every OAuth provider sends the browser back; the state names the connection.

    Only a callback for an attempt this browser session started is taken (checked before
    the state is looked up, so a refused callback spends nothing).
    """
    query = request.args.to_dict()
    if not connect_started_here(Connections.callback_key(query)):
        log.warning("connection pages: callback refused: not started in this browser session")
        return problem_page(
            400,
            "Connect refused",
            "This callback does not belong to a connect started in this browser session, so "
            "nothing was stored. Open the connection's page, press Connect and finish "
            "signing in at the provider in the same browser you are signed in with here. "
            "(Started with `deskwire connections connect`? Then copy this page's whole "
            "address and run `deskwire connections connect LINK --code '<that address>'`.)",
        )
    link = facade().complete_callback(query)
    log.info("connection pages: %s connected through the OAuth callback", link)
    flash(f"{link}: connected.", "ok")
    return redirect(url_for("connection_pages.index"), 303)
