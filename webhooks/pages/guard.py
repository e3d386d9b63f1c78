"""The check every admin page runs before its view: signed in, and a POST carries the CSRF token.

One sign-in (the ``deskwire_admin`` session cookie) serves the connection pages and the
runs pages; :func:`admin_gate` is the check both blueprints run. The connection pages'
own guard also answers 503 while the pages are off (no admin password or secret key).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from webhooks.pages.auth_views import auth_view
from webhooks.pages.blueprint import STATE_LABELS, bp, pages_setup
from webhooks.pages.problems import problem_page
from webhooks.pages.security import (
    CSRF_FIELD,
    csrf_token,
    csrf_valid,
    password_fingerprint,
    password_matches,
)

__all__ = ["admin_gate", "admin_signed_in", "csrf_field"]

log = logging.getLogger(__name__)

_PUBLIC_ENDPOINTS = frozenset(
    {"connection_pages.login", "connection_pages.callback", "connection_pages.static"}
)


def admin_signed_in() -> bool:
    """Whether this request's session signed in with the current admin password."""
    setup = pages_setup()
    password = setup.settings.admin_password
    marker = session.get("admin")
    if setup.key is None or password is None or not isinstance(marker, str):
        return False
    expected = password_fingerprint(setup.key, password.get_secret_value())
    return password_matches(marker, expected)


def csrf_field() -> Markup:
    """The hidden form field that carries this session's CSRF token."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token())


def admin_gate(
    area: str, index_endpoint: str, *, public: bool = False
) -> ResponseReturnValue | None:
    """Send a visitor who is not signed in to the sign-in page; refuse a POST without CSRF.

    ``area`` names the pages in the log; ``index_endpoint`` is where a refused form and a
    sign-in started by a POST lead back to. A ``public`` page (the sign-in page itself, the
    OAuth callback) needs no sign-in, but its POSTs still carry the token.
    """
    if not public and not admin_signed_in():
        target = url_for(index_endpoint)
        if request.method == "GET":
            query = request.query_string.decode()
            target = request.path + (f"?{query}" if query else "")
        return redirect(url_for("connection_pages.login", next=target), 303)
    if request.method == "POST" and not csrf_valid():
        log.warning("%s: POST %s refused: CSRF token missing or wrong", area, request.path)
        return problem_page(
            400,
            "Form refused",
            "The form's security token (CSRF) is missing or does not match your session. "
            "Reload the page and submit the form again.",
            back=url_for(index_endpoint),
        )
    return None


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    setup = pages_setup()
    if request.endpoint == "connection_pages.static":
        return None  # the stylesheet, also for the "pages are off" page
    if setup.settings.admin_password is None:
        return problem_page(
            503,
            "Connection pages are off",
            "The connection pages need an admin password: set DESKWIRE_ADMIN_PASSWORD in "
            "deskwire's environment and restart the web process.",
        )
    if setup.key is None:
        return problem_page(
            503,
            "Connection pages are off",
            "The connection pages need a secret key: set DESKWIRE_SECRET_KEY in deskwire's "
            "environment and restart the web process.",
        )
    public = request.endpoint in _PUBLIC_ENDPOINTS
    return admin_gate("connection pages", "connection_pages.index", public=public)


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "signed_in": admin_signed_in(),
        "csrf_field": csrf_field,
        "state_labels": STATE_LABELS,
        "auth_view": auth_view,
    }
