"""The web process as ``deskwire web`` composes it (:func:`deskwire.compose.web_parts`).

The connection pages learn which rules use a connection from the same cached rule source
that ``/healthz`` reports on (reloaded on change, last good rules kept), not by parsing
every rule file per page view; while no valid rules are loaded they say so and refuse a
delete, with a page, never a 5xx.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from deskwire.database import make_engine
from deskwire.schema import upgrade
from deskwire.settings import Settings
from deskwire.web_server import build_web_app
from tests.pages_conftest import PASSWORD, Admin
from tests.wsgi_server import serving

CONNECTIONS = "connections:\n  pagerduty:\n    service: pagerduty\n"
RULE = """\
rules:
  - id: vip-page
    on: [request.created]
    actions:
      - id: page
        uses: http.post
        with:
          connection: pagerduty
          url: https://events.pagerduty.com/v2/enqueue
"""
BROKEN = "rules: [oops\n"


def _settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    (tmp_path / "connections.yml").write_text(CONNECTIONS, encoding="utf-8")
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return Settings(
        database_url=database_url,
        broker_url=redis_url,
        admin_password=PASSWORD,
        secret_key="composition-test-key",
        connections_file=tmp_path / "connections.yml",
        rules_dir=tmp_path / "rules",
        var_dir=tmp_path / "var",
        reload_interval=0.05,
        webhook_tokens="unused-token",
    )


def _rules_check(base: str) -> str:
    reply = httpx.get(base + "/healthz", timeout=10)
    return str(reply.json()["checks"]["rules"])


def test_the_pages_use_the_rules_in_force_through_a_bad_edit(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url)
    rule_file = tmp_path / "rules" / "page.yml"
    rule_file.parent.mkdir()
    rule_file.write_text(RULE, encoding="utf-8")
    with serving(build_web_app(settings)) as base:
        admin = Admin(base)
        try:
            assert admin.sign_in().status_code == 303
            before = admin.get("/connections/pagerduty/delete")
            rule_file.write_text(BROKEN, encoding="utf-8")
            later = time.time_ns() + 1_000_000_000
            os.utime(rule_file, ns=(later, later))
            deadline = time.monotonic() + 30
            while "last edit rejected" not in _rules_check(base):
                assert time.monotonic() < deadline, "the bad edit was never noticed"
                time.sleep(0.02)  # between polls
            after = admin.get("/connections/pagerduty/delete")
            detail = admin.get("/connections/pagerduty")
            refused = admin.post("/connections/pagerduty/delete")
        finally:
            admin.close()
    assert before.status_code == 200, before.text
    assert "vip-page" in before.text
    # The last good rules are still in force (and still what the worker runs).
    assert after.status_code == 200, after.text
    assert "vip-page" in after.text
    assert detail.status_code == 200, detail.text
    assert "<code>vip-page</code>" in detail.text
    assert refused.status_code == 409, refused.text
    assert "Not deleted" in refused.text
    assert "pagerduty:" in settings.connections_file.read_text(encoding="utf-8")


def test_without_valid_rules_a_delete_is_refused_with_a_page(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    settings = _settings(tmp_path, database_url, redis_url)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "page.yml").write_text(BROKEN, encoding="utf-8")
    with serving(build_web_app(settings)) as base:
        admin = Admin(base)
        try:
            assert admin.sign_in().status_code == 303
            confirm = admin.get("/connections/pagerduty/delete")
            admin.get("/connections/login")  # a form, for the CSRF token
            refused = admin.post("/connections/pagerduty/delete")
        finally:
            admin.close()
    for page in (confirm, refused):
        assert page.status_code == 409, page.text
        assert "The rules have errors" in page.text
        assert "have 1 error(s), so which rules use a connection cannot be told" in page.text
        assert "deskwire rules check" in page.text
    assert "pagerduty:" in settings.connections_file.read_text(encoding="utf-8")
