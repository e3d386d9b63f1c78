"""The worker's consumer: it never gives up on the broker.

Celery's consumer retries a lost broker connection ``broker_connection_max_retries``
times (100 by default, about 47 minutes) and then stops the worker. deskwire's keeps
trying for as long as the worker runs, with a backoff bounded by
``DESKWIRE_BROKER_RECONNECT_MAX``, and resumes consuming when the broker returns.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from celery.worker.state import maybe_shutdown

log = logging.getLogger(__name__)


class PersistentConsumer(Consumer):  # type: ignore[misc]
    """A Celery consumer whose broker (re)connection has no retry limit."""

    def ensure_connected(self, conn: Any) -> Any:
        """Connect, retrying forever with a bounded backoff; a shutdown request still stops."""
        ceiling = float(self.app.conf.deskwire_broker_reconnect_max)
        attempts = 0

        def on_error(exc: BaseException, interval: float) -> None:
            nonlocal attempts
            attempts += 1
            log.error(
                "broker %s unreachable (%s); attempt %s, trying again in %.1fs "
                "(a worker never gives up on the broker)",
                conn.as_uri(), exc, attempts, interval,
            )  # fmt: skip

        conn = conn.ensure_connection(
            on_error,
            None,  # no limit
            interval_start=min(1.0, ceiling),
            interval_step=min(2.0, ceiling),
            interval_max=ceiling,
            callback=maybe_shutdown,
        )
        if attempts:
            log.warning("broker %s reachable again after %s attempt(s)", conn.as_uri(), attempts)
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn
