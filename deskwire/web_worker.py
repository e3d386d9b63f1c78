"""The gunicorn worker of ``deskwire web``: threads that slow clients cannot hold.

gunicorn's ``gthread`` worker parks idle connections in a selector, but once a thread has
started reading a request it blocks until the client has sent the whole head: a few
sockets that stop half-way through their headers would hold every thread and starve
ingest (measured with ``bench/slow_clients.py``). This subclass buffers each request head
without blocking: a thread takes whatever bytes have arrived and, while the head is
incomplete, hands the connection back to the selector. So a thread only ever parses a
complete head, and a client that goes quiet costs a file descriptor, not a thread.

Bounds: a connection silent for the keep-alive timeout is closed by gunicorn; a head must
be complete within :data:`HEADER_TIMEOUT` seconds of its first byte and within
:data:`HEAD_MAX` bytes; each read of a body waits at most :data:`BODY_TIMEOUT` seconds.

gunicorn is pinned in ``constraints.txt``: these overrides follow its gthread worker's
``handle``/``handle_request`` methods, its ``TConn`` and its ``_DEFER`` marker.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.workers import gthread

__all__ = ["BODY_TIMEOUT", "HEADER_TIMEOUT", "HEAD_MAX", "SlowClientSafeWorker"]

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
HEAD_MAX = 64 * 1024
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


def _complete(head: bytes) -> bool:
    return any(end in head for end in _HEAD_ENDS)


class SlowClientSafeWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """``gthread`` that buffers request heads in the selector and bounds body reads."""

    def handle(self, conn: Any) -> Any:
        """Serve one request of ``conn`` once its head is complete (in a pool thread)."""
        head: bytes = getattr(conn, "deskwire_head", b"")
        started: float = getattr(conn, "deskwire_head_started", 0.0)
        if conn.parser is not None:  # a kept-alive connection: bytes read ahead come first
            head = conn.parser.unreader.take_buffered() + head
        conn.sock.setblocking(False)
        try:
            while not _complete(head) and len(head) <= HEAD_MAX:
                chunk = conn.sock.recv(16384)
                if not chunk:
                    return False  # the client closed the connection
                if not head:
                    started = time.monotonic()
                head += chunk
        except BlockingIOError:
            pass  # nothing more for now
        except OSError:
            return False
        if len(head) > HEAD_MAX or (head and time.monotonic() - started > HEADER_TIMEOUT):
            self.log.info("closing %s: request head too large or too slow", conn.client)
            return False
        if not _complete(head):
            conn.deskwire_head, conn.deskwire_head_started = head, started
            return gthread._DEFER  # wait in the selector for more, without a thread
        conn.deskwire_head = b""
        conn.init()
        conn.parser.unreader.unread(head)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """The head is parsed: each read of the body is bounded while the app runs."""
        conn.sock.settimeout(BODY_TIMEOUT)
        return super().handle_request(req, conn)
