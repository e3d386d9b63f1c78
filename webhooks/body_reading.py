"""Reading a webhook body off the socket with a size limit and a read timeout.

Werkzeug's ``request.get_data()`` stops a chunked body at ``MAX_CONTENT_LENGTH`` and
returns what it has (the rest is silently cut off), and a client that sends fewer bytes
than its ``Content-Length`` keeps a sync worker blocked until the server kills it. So the
body is read here, from the WSGI input stream: a body over the limit, chunked or not, is a
413; a body that stops arriving for ``read_timeout`` seconds (or is cut short) is a 400.
The timeout is set on the connection's socket, which both gunicorn (``gunicorn.socket``)
and werkzeug's server (``werkzeug.socket``) put in the environ, and restored afterwards.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any, Protocol

from webhooks.errors import WebhookError

CHUNK = 64 * 1024
# However slowly it trickles in, a body must be complete within this many read timeouts.
TOTAL_READS = 15


def _too_large(limit: int) -> WebhookError:
    return WebhookError(413, "too_large", f"the body is larger than the limit of {limit} bytes")


def _declared_length(environ: Mapping[str, Any]) -> int | None:
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    value = environ.get("CONTENT_LENGTH", "")
    if value in ("", None):
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise WebhookError(400, "bad_content_length", "Content-Length must be a whole number")
    return int(text)


class _TimedSocket(Protocol):
    def gettimeout(self) -> float | None: ...
    def settimeout(self, value: float | None) -> None: ...


def _connection(environ: Mapping[str, Any]) -> _TimedSocket | None:
    """The client socket (stdlib, ssl or gevent), if the server exposes it."""
    for key in ("gunicorn.socket", "werkzeug.socket"):
        candidate: Any = environ.get(key)
        if hasattr(candidate, "settimeout") and hasattr(candidate, "gettimeout"):
            sock: _TimedSocket = candidate
            return sock
    return None


def read_body(environ: Mapping[str, Any], *, max_bytes: int, read_timeout: float) -> bytes:
    """The whole request body, or a 400/413 :class:`WebhookError` saying what was wrong."""
    declared = _declared_length(environ)
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    terminated = bool(environ.get("wsgi.input_terminated"))
    if declared is None and not terminated:
        return b""  # no length and no chunking: HTTP says there is no body
    wanted = declared if declared is not None else max_bytes + 1
    stream = environ["wsgi.input"]
    sock = _connection(environ)
    prior = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + read_timeout * TOTAL_READS
    parts: list[bytes] = []
    received = 0
    try:
        while received < wanted:
            if sock is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(min(read_timeout, remaining))
            data = stream.read(min(CHUNK, wanted - received))
            if not data:
                break
            parts.append(data)
            received += len(data)
    except TimeoutError:
        expected = f" of {declared}" if declared is not None else ""
        raise WebhookError(
            400,
            "incomplete_body",
            f"the body stopped arriving after {received}{expected} bytes; send the whole body "
            "promptly, with a Content-Length that matches it",
        ) from None
    except Exception as exc:  # noqa: BLE001 - each server's stream has its own error types
        raise WebhookError(
            400, "incomplete_body", f"the body could not be read ({type(exc).__name__})"
        ) from None
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):  # the client has gone; the server closes up
                sock.settimeout(prior)
    if declared is None and received > max_bytes:
        raise _too_large(max_bytes)
    if declared is not None and received < declared:
        raise WebhookError(
            400,
            "incomplete_body",
            f"the body ended after {received} of the {declared} bytes its Content-Length announced",
        )
    return b"".join(parts)
