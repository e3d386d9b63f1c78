"""Every response of the web app carries the security headers: JSON, pages, errors."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from deskwire.compose import web_app
from deskwire.settings import Settings
from tests.pages_conftest import NullQueue
from tests.wsgi_server import serving
from webhooks.pages import register_connection_pages
from webhooks.security_headers import SECURITY_HEADERS


@pytest.fixture
def base(tmp_path: Path, redis_url: str, upgraded_sqlite_file: Path) -> Iterator[str]:
    shutil.copyfile(upgraded_sqlite_file, tmp_path / "web.db")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/web.db",
        broker_url=redis_url,
        admin_password="headers-admin-password",
        secret_key="headers-secret-key",
        connections_file=tmp_path / "connections.yml",
        webhook_tokens="headers-token",
        webhook_max_bytes=1024,
    )
    app = web_app(settings, queue=NullQueue())
    client = redis.Redis.from_url(redis_url)

    def no_facade() -> None:
        raise AssertionError("not needed")

    register_connection_pages(
        app, connections=no_facade, settings=settings, used_by=dict, redis_client=client
    )
    with serving(app) as url:
        yield url
    client.close()


REQUESTS = [
    ("GET", "/healthz", {}),
    ("POST", "/webhooks/sdp", {"headers": {"X-Deskwire-Token": "wrong"}}),  # 401
    ("POST", "/webhooks/sdp", {"headers": {"X-Deskwire-Token": "headers-token"}}),  # 400
    ("POST", "/webhooks/sdp", {"content": b"x" * 4096}),  # 413
    ("GET", "/webhooks/sdp", {}),  # 405
    ("GET", "/no/such/page", {}),  # 404
    ("GET", "/connections/login", {}),
    ("GET", "/connections", {}),  # redirect to sign-in
    ("GET", "/connections/static/deskwire.css", {}),
    ("POST", "/connections/login", {"data": {"password": "wrong"}}),  # 401 page
]


@pytest.mark.parametrize(("method", "path", "extra"), REQUESTS)
def test_every_response_has_the_security_headers(
    base: str, method: str, path: str, extra: dict[str, object]
) -> None:
    response = httpx.request(method, base + path, timeout=10, **extra)  # type: ignore[arg-type]
    for name, value in SECURITY_HEADERS.items():
        if name == "Cache-Control" and path.startswith("/connections/static/"):
            continue  # the stylesheet may be cached
        assert response.headers.get(name) == value, (response.status_code, name)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
