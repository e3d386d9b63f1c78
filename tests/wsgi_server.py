"""Serve a WSGI app (ours or a fake SDP/OAuth server), or a plain keep-alive request
handler, over loopback HTTP in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server


class UnderscoreHeadersHandler(WSGIRequestHandler):
    """Keeps headers whose names hold ``_`` (werkzeug drops them; Tomcat, which serves an
    on-premises SDP, reads them: ``TECHNICIAN_KEY`` of older builds)."""

    def make_environ(self) -> Any:
        environ = super().make_environ()
        for key, value in self.headers.items():
            if "_" in key:
                environ["HTTP_" + key.upper().replace("-", "_")] = value
        return environ


@contextmanager
def serving(
    app: Any, host: str = "127.0.0.1", *, underscore_headers: bool = False
) -> Iterator[str]:
    """Yield the base URL of ``app`` served on a free loopback port."""
    handler = UnderscoreHeadersHandler if underscore_headers else None
    server = make_server(host, 0, app, threaded=True, request_handler=handler)
    with _in_a_thread(server):
        yield f"http://{host}:{server.server_port}"


@contextmanager
def serving_handler(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Yield the base URL of a threaded ``http.server`` answering with ``handler`` (for
    tests that need keep-alive connections or exact control of the reply)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with _in_a_thread(server):
        yield f"http://127.0.0.1:{server.server_port}"
    server.server_close()


def send_json(
    handler: BaseHTTPRequestHandler, body: bytes, headers: dict[str, str] | None = None
) -> None:
    """Answer 200 with a JSON ``body`` (and ``headers``) from an ``http.server`` handler."""
    handler.send_response(200)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def _in_a_thread(server: Any) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(timeout=5)
