"""How a step ends badly: for good (recorded, maybe dead-lettered) or for now (retried)."""

from __future__ import annotations


class StepFailed(Exception):
    """A permanent failure of one step; the message is shown in run history.

    ``http_status`` is the status the service answered with, when it answered.
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class StepRetry(Exception):
    """A transient failure (transport, 429, 5xx); the event is retried with backoff."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.http_status = http_status


class EventDeadLettered(Exception):
    """Raised by the task after an event was recorded as failed, so Celery (and Flower)
    report the task as FAILURE. The message is the recorded error, which carries no secrets
    (step errors never include credentials). One plain message argument, so it pickles
    and serialises like any exception."""
