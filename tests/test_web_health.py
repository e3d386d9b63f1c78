"""The composed web app reports the rules it runs, hot-reloaded, in /healthz."""

from __future__ import annotations

from pathlib import Path

import httpx

from deskwire.settings import Settings
from deskwire.web_server import build_web_app
from tests.waiting import wait_until
from tests.wsgi_server import serving

GOOD = "rules:\n  - id: a\n    on: request.created\n"


def test_healthz_shows_the_rules_version_and_a_rejected_edit(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text(GOOD)
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        rules_dir=rules,
        reload_interval=0.2,
        webhook_tokens="t",
    )
    with serving(build_web_app(settings)) as base:
        first = httpx.get(base + "/healthz").json()["checks"]["rules"]
        assert first.startswith("ok; version ")
        (rules / "a.yml").write_text(
            "rules:\n  - id: a\n    on: request.created\n    stop: maybe\n"
        )

        def rejection_shown() -> httpx.Response | None:
            # Each /healthz looks at the folder (at most every reload_interval).
            reply = httpx.get(base + "/healthz")
            return reply if "last edit rejected" in reply.json()["checks"]["rules"] else None

        reply = wait_until(rejection_shown, 10, "the rejected edit showing on /healthz")
        # The last good rules still run: the check stays healthy (no worker runs here, so
        # the reply as a whole is 503 for another reason).
        assert reply.json()["checks"]["rules"].startswith("ok; version ")
        assert "last edit rejected (1 error;" in reply.json()["checks"]["rules"]
        assert first.split(";")[1] in reply.json()["checks"]["rules"]


def test_healthz_is_503_when_no_rules_ever_loaded(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yml").write_text("rules: [oops\n")
    settings = Settings(
        database_url=database_url, broker_url=redis_url, rules_dir=rules, webhook_tokens="t"
    )
    with serving(build_web_app(settings)) as base:
        reply = httpx.get(base + "/healthz")
        assert reply.status_code == 503
        assert reply.json()["checks"]["rules"].startswith("error: no valid rules loaded")
