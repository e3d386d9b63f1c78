"""The sign-in throttle is kept in Redis: shared by web processes, kept across restarts."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.waiting import wait_until
from tests.web_process import web_process
from webhooks.pages.security import LoginThrottle

PASSWORD = "throttle-test-admin-password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def test_failures_are_counted_per_address_within_the_window(client: redis.Redis) -> None:
    throttle = LoginThrottle(client, limit=3, window=2)
    for _ in range(3):
        assert throttle.retry_after("10.1.1.1") is None
        throttle.failed("10.1.1.1")
    wait = throttle.retry_after("10.1.1.1")
    assert wait is not None
    assert 1 <= wait <= 2
    assert throttle.retry_after("10.1.1.2") is None  # another address is not affected
    wait_until(lambda: throttle.retry_after("10.1.1.1") is None, 10, "the window ending")


def test_a_success_forgets_the_failures(client: redis.Redis) -> None:
    throttle = LoginThrottle(client, limit=2, window=60)
    throttle.failed("10.2.2.2")
    throttle.succeeded("10.2.2.2")
    throttle.failed("10.2.2.2")
    assert throttle.retry_after("10.2.2.2") is None


def test_the_address_is_not_stored_and_keys_expire(client: redis.Redis) -> None:
    throttle = LoginThrottle(client, limit=5, window=300)
    throttle.failed("192.0.2.77")
    keys = [key.decode() for key in client.keys("deskwire:login-failures:*")]
    assert len(keys) == 1
    assert "192.0.2.77" not in keys[0]
    assert 0 < client.ttl(keys[0]) <= 300


def test_two_instances_share_one_count(redis_url: str) -> None:
    first = redis.Redis.from_url(redis_url)
    second = redis.Redis.from_url(redis_url)
    try:
        a, b = LoginThrottle(first, limit=4), LoginThrottle(second, limit=4)
        a.failed("10.3.3.3")
        b.failed("10.3.3.3")
        a.failed("10.3.3.3")
        assert b.retry_after("10.3.3.3") is None
        b.failed("10.3.3.3")
        assert a.retry_after("10.3.3.3") is not None
    finally:
        first.close()
        second.close()


def _sign_in(base: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=15) as http:
        page = http.get("/connections/login")
        token = CSRF.search(page.text)
        form = {"password": password, **({"csrf_token": token.group(1)} if token else {})}
        return http.post("/connections/login", data=form)


@pytest.mark.integration
def test_the_throttle_holds_across_web_processes_and_a_restart(
    tmp_path: Path, redis_url: str, upgraded_sqlite_file: Path
) -> None:
    (tmp_path / "rules").mkdir()
    shutil.copyfile(upgraded_sqlite_file, tmp_path / "web.db")
    env = {
        "DESKWIRE_BROKER_URL": redis_url,
        "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path}/web.db",
        "DESKWIRE_WEBHOOK_TOKENS": "throttle-webhook-token",
        "DESKWIRE_SECRET_KEY": "throttle-secret-key",
        "DESKWIRE_ADMIN_PASSWORD": PASSWORD,
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
    }
    log = tmp_path / "web.log"
    with web_process(env, log) as first, web_process(env, log) as second:
        # Five wrong passwords spread over two processes (and their gunicorn workers).
        for base in (first, second, first, second, first):
            assert _sign_in(base, "wrong guess").status_code == 401
        for base in (first, second):
            refused = _sign_in(base, PASSWORD)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["Retry-After"]) > 0
    # Both processes gone; a new one still refuses the address.
    with web_process(env, log) as restarted:
        assert _sign_in(restarted, PASSWORD).status_code == 429
        assert "wrong guess" not in log.read_text(errors="replace")


def test_sign_in_is_refused_when_redis_is_unreachable(
    tmp_path: Path, upgraded_sqlite_file: Path
) -> None:
    """Without the shared count, a sign-in is refused (503), never let through unthrottled."""
    from deskwire.compose import web_app
    from deskwire.settings import Settings
    from tests.pages_conftest import NullQueue
    from tests.wsgi_server import serving
    from webhooks.pages import register_connection_pages

    shutil.copyfile(upgraded_sqlite_file, tmp_path / "web.db")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/web.db",
        broker_url="redis://127.0.0.1:1/0",
        admin_password=PASSWORD,
        secret_key="throttle-secret-key",
        connections_file=tmp_path / "connections.yml",
        webhook_tokens="unused",
    )
    app = web_app(settings, queue=NullQueue())
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)

    def no_facade() -> None:
        raise AssertionError("not needed")

    register_connection_pages(
        app, connections=no_facade, settings=settings, used_by=dict, redis_client=dead
    )
    with serving(app) as base:
        response = _sign_in(base, PASSWORD)
    assert response.status_code == 503
    assert "Redis" in response.text
