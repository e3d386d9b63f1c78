"""The /runs pages over real HTTP and in headless Chromium: events processed by a real
worker on real Redis against the fake SDP, listed, filtered, paged, shown and replayed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from deskwire.web_server import build_web_app
from tests.browser import Browser, find_chromium
from tests.integration import Deployment, deployment
from tests.pages_conftest import PASSWORD, Admin
from tests.wsgi_server import serving

pytestmark = pytest.mark.integration

SCREENSHOTS = Path(__file__).parent / "screenshots"
RULES = """\
rules:
  - id: acknowledge
    on: [request.created]
    when:
      all:
        - request.priority.name: High
    actions:
      - id: note
        uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "Seen: {{ request.subject }}"
  - id: low-only
    on: [request.created]
    when:
      all:
        - request.priority.name: Low
    actions:
      - {id: say, uses: log, with: {message: "low"}}
"""


@dataclass
class RunsSite:
    """A deployment with a real worker, and the web app with the pages on it."""

    d: Deployment
    base: str
    pks: dict[str, int]


def _event(d: Deployment, event_id: str, request_id: str, priority: str, **extra: object) -> dict:
    request = {"id": request_id, "subject": f"S {event_id}", "priority": {"name": priority}}
    return {"event": "request.created", "event_id": event_id, "request": request, **extra}


@pytest.fixture
def site(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[RunsSite]:
    with deployment(tmp_path, database_url, redis_url, rules=RULES) as d:
        d.fake.fail_next = [(400, 4000)]  # the first note is refused for good: a dead letter
        pks: dict[str, int] = {}
        for event_id, request_id, priority, extra in (
            ("ev-failed", "801", "High", {"api_key": "KEY-IN-BODY-123", "token": "e2e-token"}),
            ("ev-done", "802", "High", {}),
            ("ev-low", "803", "Low", {}),
        ):
            assert d.post(_event(d, event_id, request_id, priority, **extra)).status_code == 202
            event = d.wait_for(event_id)
            pks[event_id] = event.id
        settings = d.settings.model_copy(
            update={
                "admin_password": SecretStr(PASSWORD),
                "secret_key": [SecretStr("test-secret-key-for-e2e")],
            }
        )
        with serving(build_web_app(settings)) as base:
            yield RunsSite(d, base, pks)


@pytest.fixture
def admin(site: RunsSite) -> Iterator[Admin]:
    client = Admin(site.base)
    assert client.sign_in().status_code == 303
    yield client
    client.close()


def _rows(html: str) -> list[tuple[int, str]]:
    return [
        (int(pk), status) for pk, status in re.findall(r'id="run-(\d+)" data-status="(\w+)"', html)
    ]


def test_runs_need_the_admin_sign_in(site: RunsSite) -> None:
    client = Admin(site.base)
    for path in ("/runs", f"/runs/{site.pks['ev-done']}"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/connections/login?next=/runs")
    # Signing in from there comes back to the runs page.
    client.get("/connections/login")
    back = client.post("/connections/login", {"password": PASSWORD, "next": "/runs?status=failed"})
    assert back.headers["Location"] == "/runs?status=failed"
    assert client.get("/runs").status_code == 200
    client.close()


def test_runs_are_listed_newest_first_filtered_and_paged(site: RunsSite, admin: Admin) -> None:
    failed, done, low = site.pks["ev-failed"], site.pks["ev-done"], site.pks["ev-low"]
    page = admin.get("/runs")
    assert page.status_code == 200
    assert _rows(page.text) == [(low, "done"), (done, "done"), (failed, "failed")]
    assert _rows(admin.get("/runs?status=failed").text) == [(failed, "failed")]
    assert _rows(admin.get("/runs?request=802").text) == [(done, "done")]
    assert _rows(admin.get("/runs?rule=low-only").text) == [(low, "done")]
    assert _rows(admin.get("/runs?rule=acknowledge").text) == [(done, "done"), (failed, "failed")]
    assert _rows(admin.get("/runs?source=sdp").text) == _rows(page.text)
    assert _rows(admin.get("/runs?source=elsewhere").text) == []
    assert _rows(admin.get("/runs?since=2000-01-01&until=2999-01-01T00:00").text) == _rows(
        page.text
    )
    assert _rows(admin.get("/runs?until=2000-01-01").text) == []
    # Paging: the filters ride along on the page links.
    first = admin.get("/runs?status=done&per=ignored")
    assert 'rel="next"' not in first.text
    assert _rows(admin.get("/runs?status=done&page=2").text) == []


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=lost", "status &#39;lost&#39; is not one of"),
        ("request=80%202", "request id may hold only"),
        ("since=yesterday", "from &#39;yesterday&#39; is not a time"),
        ("until=2026-13-01", "until &#39;2026-13-01&#39; is not a time"),
        ("since=2026-02-01&until=2026-01-01", "&#39;until&#39; must be later than &#39;from&#39;"),
        ("page=0", "page &#39;0&#39; is not a page number"),
        ("page=-3", "page &#39;-3&#39; is not a page number"),
        ("page=" + "9" * 40, "is not a page number"),
        ("rule=" + "r" * 150, "rule is longer than 100 characters"),
    ],
)
def test_bad_filters_are_reported_never_a_5xx(
    site: RunsSite, admin: Admin, query: str, says: str
) -> None:
    response = admin.get(f"/runs?{query}")
    assert response.status_code == 400, response.text[:300]
    assert says in response.text
    assert 'id="filters"' in response.text  # the form is there to correct it


def test_a_run_shows_its_payload_redacted_rules_and_steps(site: RunsSite, admin: Admin) -> None:
    failed = admin.get(f"/runs/{site.pks['ev-failed']}")
    assert failed.status_code == 200
    text = failed.text
    assert 'id="run-status">failed' in text
    assert "KEY-IN-BODY-123" not in text
    assert "e2e-token" not in text
    assert "[redacted]" in text
    assert "S ev-failed" in text  # the rest of the payload is shown
    assert re.search(r'id="rule-acknowledge" data-outcome="failed"', text)
    assert re.search(r'id="rule-low-only" data-outcome="not_matched"', text)
    assert "Why not: " in text
    step = re.search(r'id="step-acknowledge-note" data-status="failed">(.*?)</tr>', text, re.S)
    assert step is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", step.group(1), re.S)
    assert cells[2] == "failed"
    assert cells[3].endswith(" ms")
    assert cells[4] == "400"
    assert cells[5] == "1"
    assert "SDP add_note failed (HTTP 400)" in cells[6]
    assert 'id="replay"' in text
    done = admin.get(f"/runs/{site.pks['ev-done']}").text
    assert 'id="replay"' not in done  # only failed runs have the button
    assert re.search(r'id="step-acknowledge-note" data-status="succeeded"', done)
    missing = admin.get("/runs/999999")
    assert missing.status_code == 404
    assert admin.get("/runs/not-a-number").status_code == 404


def test_replay_needs_the_csrf_token_and_only_failed_runs_replay(
    site: RunsSite, admin: Admin
) -> None:
    failed, done = site.pks["ev-failed"], site.pks["ev-done"]
    admin.get(f"/runs/{failed}")
    for form in ({}, {"csrf_token": "forged-token-value-that-is-long-enough-xx"}):
        refused = admin.post(f"/runs/{failed}/replay", form, csrf=False)
        assert refused.status_code == 400
        assert "security token (CSRF)" in refused.text
    assert site.d.event("ev-failed").status == "failed"  # type: ignore[union-attr]
    not_failed = admin.follow(admin.post(f"/runs/{done}/replay"))
    assert "was not replayed: only failed events are" in not_failed.text
    # The real replay: queued again, the worker runs the failed step, the event is done.
    shown = admin.follow(admin.post(f"/runs/{failed}/replay"))
    assert f"Event {failed} is queued again." in shown.text
    event = site.d.wait_for("ev-failed", ("done",))
    assert event.status == "done"
    assert [n["request_id"] for n in site.d.fake.notes].count("801") == 1
    again = admin.get(f"/runs/{failed}").text
    assert re.search(r'id="step-acknowledge-note" data-status="succeeded"', again)
    assert 'id="replay"' not in again


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary: apt-get install chromium (or set DESKWIRE_TEST_CHROMIUM)")
    pytest.importorskip("websocket", reason="websocket-client is needed to drive chromium")
    driver = Browser(binary, tmp_path / "chromium-profile")
    yield driver
    driver.close()


def test_runs_pages_in_headless_chromium(site: RunsSite, browser: Browser) -> None:
    failed = site.pks["ev-failed"]
    browser.goto(site.base + "/runs")
    assert "/connections/login" in browser.url()
    browser.fill("#password", PASSWORD)
    browser.click("form button[type=submit]")
    assert browser.url().endswith("/runs")
    assert f'id="run-{failed}" data-status="failed"' in browser.html()
    browser.screenshot(SCREENSHOTS / "runs_list.png")
    browser.fill("#status", "failed")
    browser.click("#filters button[type=submit]")
    assert "status=failed" in browser.url()
    assert len(_rows(browser.html())) == 1
    browser.screenshot(SCREENSHOTS / "runs_filtered.png")
    browser.click(f"#run-{failed} a")
    assert browser.url().endswith(f"/runs/{failed}")
    assert "KEY-IN-BODY-123" not in browser.html()
    browser.screenshot(SCREENSHOTS / "run_failed.png")
    browser.click("#replay button")
    assert f"Event {failed} is queued again." in browser.html()
    site.d.wait_for("ev-failed", ("done",))
    browser.goto(site.base + f"/runs/{failed}")
    assert 'id="run-status">done' in browser.html()
    browser.screenshot(SCREENSHOTS / "run_replayed.png")
