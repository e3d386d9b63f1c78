"""Signing in and out of the admin pages; failed sign-ins are throttled per address."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import redis
from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from webhooks.pages.blueprint import bp, pages_setup
from webhooks.pages.guard import admin_signed_in
from webhooks.pages.problems import problem_page
from webhooks.pages.security import csrf_token, password_fingerprint, password_matches

__all__ = ["login", "logout"]

log = logging.getLogger(__name__)


def _safe_next(target: str | None) -> str:
    """Only a path of these pages may be a sign-in's destination (no open redirect)."""
    if target and not any(c in target for c in "\\\r\n"):
        parts = urlsplit(target)
        inside = parts.path.startswith(("/connections", "/runs"))
        if not parts.scheme and not parts.netloc and inside:
            return target
    return url_for("connection_pages.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Sign in with the admin password; failed attempts are throttled per address."""
    setup = pages_setup()
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if admin_signed_in():
            return redirect(target, 303)
        return render_template("connections/login.html", next=target, error=None)
    client = request.remote_addr or "unknown"
    try:
        wait = setup.throttle.retry_after(client)
    except redis.RedisError as exc:
        # Without the shared count, guessing would be unthrottled: refuse for now.
        log.error("connection pages: sign-in refused, the throttle's Redis failed: %s", exc)
        return problem_page(
            503,
            "Sign-in unavailable",
            "deskwire cannot reach Redis, which counts failed sign-ins; try again shortly.",
        )
    if wait is not None:
        minutes = max(1, round(wait / 60))
        error = f"Too many failed sign-ins from your address; try again in {minutes} min."
        body = render_template("connections/login.html", next=target, error=error)
        return body, 429, {"Retry-After": str(int(wait))}
    expected = setup.settings.admin_password
    assert expected is not None  # the guard answered 503 otherwise
    assert setup.key is not None
    if not password_matches(request.form.get("password", ""), expected.get_secret_value()):
        try:
            setup.throttle.failed(client)
        except redis.RedisError as exc:
            log.error("connection pages: could not count a failed sign-in: %s", exc)
        log.warning("connection pages: failed sign-in from %s", client)
        body = render_template("connections/login.html", next=target, error="Wrong password.")
        return body, 401
    try:
        setup.throttle.succeeded(client)
    except redis.RedisError as exc:
        log.error("connection pages: could not clear failed sign-ins: %s", exc)
    session.clear()  # a fresh session (and CSRF token) for the signed-in admin
    session.permanent = True
    session["admin"] = password_fingerprint(setup.key, expected.get_secret_value())
    csrf_token()
    log.info("connection pages: admin signed in from %s", client)
    return redirect(target, 303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out."""
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("connection_pages.login"), 303)
