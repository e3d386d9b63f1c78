"""The one error type of webhook handling: an HTTP status and a message that says what to fix."""

from __future__ import annotations


class WebhookError(Exception):
    """A refused webhook; the reply is ``{"error": <code>, "message": <message>}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
