"""Serve a WSGI app (ours or a fake SDP/OAuth server) over loopback HTTP in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
