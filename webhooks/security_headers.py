"""Security headers on every response of the web app (JSON replies and pages alike).

The pages need only their own stylesheet: no scripts, no frames, no outside origin. JSON
replies are not meant to be rendered at all. So one strict policy fits every response;
a view that sets one of these headers itself keeps its own value.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, Response

__all__ = ["SECURITY_HEADERS", "add_security_headers"]

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        # No form-action: a connect form's answer redirects to the OAuth provider.
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_security_headers(app: Flask) -> None:
    """Add :data:`SECURITY_HEADERS` to every response of ``app``, errors included."""

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
