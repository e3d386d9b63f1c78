"""The admin pages: ``/connections`` (list, details, connect, revoke, delete, edit) and ``/runs``.

One module per concern: :mod:`~webhooks.pages.blueprint` (the ``/connections`` blueprint
and its setup), :mod:`~webhooks.pages.guard` (the sign-in and CSRF check both areas run),
:mod:`~webhooks.pages.signin`, :mod:`~webhooks.pages.listing`,
:mod:`~webhooks.pages.connect`, :mod:`~webhooks.pages.manage` (revoke, delete),
:mod:`~webhooks.pages.edit`, :mod:`~webhooks.pages.files` (writing ``connections.yml``),
:mod:`~webhooks.pages.problems` (error pages), :mod:`~webhooks.pages.security` (session
key, CSRF, login throttle) and :mod:`~webhooks.pages.runs`.

Every page except the sign-in page and the OAuth callback needs the admin password; every
POST carries the session's CSRF token. No page ever shows a secret, not even masked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

import redis
from flask import Flask

from connections import Connections
from deskwire.settings import Settings
from webhooks.pages import connect, edit, guard, listing, manage, problems, signin
from webhooks.pages.blueprint import EXTENSION, PagesSetup, bp
from webhooks.pages.runs import register_runs_pages
from webhooks.pages.security import LoginThrottle, session_key

__all__ = ["register_connection_pages", "register_runs_pages"]

# Importing a view module adds its routes and handlers to the blueprint: all of them are
# in place before register_connection_pages registers it.
_VIEWS = (connect, edit, guard, listing, manage, problems, signin)
_SESSION_LIFETIME = timedelta(hours=8)


def register_connection_pages(
    app: Flask,
    *,
    connections: Callable[[], Connections],
    settings: Settings,
    used_by: Callable[[], Mapping[str, Sequence[str]]],
    redis_client: redis.Redis,
) -> None:
    """Add the ``/connections`` pages to ``app``.

    ``connections`` returns this process's facade (built lazily); ``used_by`` maps each link
    name to the ids of the rules that use it; failed sign-ins are counted in
    ``redis_client``, shared by every web process. The session cookie (``deskwire_admin``,
    path ``/``, shared with the runs pages) is signed with a key derived from the newest
    ``DESKWIRE_SECRET_KEY``.
    """
    key = session_key(settings.secret_key[0].get_secret_value()) if settings.secret_key else None
    if key is not None:
        app.secret_key = key
    app.config.update(
        SESSION_COOKIE_NAME="deskwire_admin",
        # "/": the same sign-in serves the runs pages (/runs); SameSite keeps it off
        # cross-site posts, and no other route reads the session.
        SESSION_COOKIE_PATH="/",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=_SESSION_LIFETIME,
    )
    app.extensions[EXTENSION] = PagesSetup(
        connections, settings, used_by, key, LoginThrottle(redis_client)
    )
    app.register_blueprint(bp)
