"""Problem pages: how the connection pages answer a refused or failed request.

Views let the :class:`~connections.Connections` facade's errors (whose messages carry no
secrets) propagate; the handlers here turn them into an HTML page with the right status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from connections import (
    ConnectionInUseError,
    ConnectionsConfigError,
    ConnectionsError,
    NotConfiguredError,
    NotConnectedError,
    NotEditableError,
    OAuthCallbackError,
    SecretKeyError,
    TokenRequestError,
    TransientTokenError,
    UnknownConnectionError,
    UnsupportedOperationError,
)
from connections.errors import UsageUnknownError
from webhooks.pages.blueprint import bp

__all__ = ["problem_page"]

log = logging.getLogger(__name__)


def problem_page(
    status: int,
    title: str,
    message: str,
    *,
    problems: Sequence[str] = (),
    back: str | None = None,
) -> ResponseReturnValue:
    """A page that says what went wrong, with a link back (the connections list by default)."""
    body = render_template(
        "connections/problem.html",
        title=title,
        message=message,
        problems=problems,
        back=back or url_for("connection_pages.index"),
    )
    return body, status


_ERROR_STATUS: tuple[tuple[type[ConnectionsError], int, str], ...] = (
    (UnknownConnectionError, 404, "No such connection"),
    (OAuthCallbackError, 400, "Connect failed"),
    (NotEditableError, 400, "This change is not allowed"),
    (ConnectionInUseError, 409, "Connection in use"),
    (NotConfiguredError, 409, "Connection not configured"),
    (NotConnectedError, 409, "Not connected"),
    (UnsupportedOperationError, 400, "Not possible for this connection"),
    (TokenRequestError, 502, "The provider refused"),
    (TransientTokenError, 502, "The provider did not answer"),
    # Problems of deskwire's own configuration, not of the server: the page says what to fix
    # (a 5xx would read as a crash to the admin and to monitoring).
    (SecretKeyError, 409, "Stored credentials cannot be read"),
    (ConnectionsConfigError, 409, "The connections file has errors"),
    (UsageUnknownError, 409, "The rules have errors"),
)


@bp.errorhandler(ConnectionsError)
def _connections_error(exc: ConnectionsError) -> ResponseReturnValue:
    status, title = 400, "Connection error"
    for kind, code, heading in _ERROR_STATUS:
        if isinstance(exc, kind):
            status, title = code, heading
            break
    log.warning("connection pages: %s %s: %s", request.method, request.path, exc)
    problems: Sequence[str] = ()
    message = str(exc)
    if isinstance(exc, ConnectionsConfigError):
        problems = [str(issue) for issue in exc.errors]
        message = "Fix these in the connections file, then reload this page:"
        if request.method == "GET":
            status = 200  # the page itself worked: it shows the file's errors
    elif isinstance(exc, NotEditableError):
        problems = exc.problems
    return problem_page(status, title, message, problems=problems)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    if status >= 500:
        return problem_page(
            status,
            "Something went wrong",
            "deskwire could not complete this page; the web process's log has the details.",
        )
    return problem_page(status, exc.name or "Error", exc.description or "")
