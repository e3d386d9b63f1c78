"""The /connections admin pages over real HTTP: sign-in, CSRF, list, connect, revoke,
delete, edit — against real Redis, a real database and a fake OAuth 2.0 provider on
loopback — and once more in headless Chromium, with screenshots."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from connections import ConnectionState, load_config
from connections.store import ConnectionAuthState
from deskwire.database import make_engine
from deskwire.schema import upgrade
from deskwire.settings import Settings
from deskwire.web_server import build_web_app
from tests.browser import Browser, find_chromium
from tests.fakes.oauth import CONSUMER_KEY, CONSUMER_SECRET, FakeOAuth
from tests.pages_conftest import (
    API_KEY,
    CLIENT_SECRET,
    ENV,
    PASSWORD,
    Admin,
    PagesApp,
    running_pages,
)
from tests.wsgi_server import serving

SCREENSHOTS = Path(__file__).parent / "screenshots"
OAUTH1_SERVICE = """\
  old_api:
    name: Old API
    auth: oauth1
    request_token_url: {url}/oauth1/request_token
    authorize_url: {url}/oauth1/authorize
    access_token_url: {url}/oauth1/access_token
    consumer_key: ${{OLD_KEY}}
    consumer_secret: ${{OLD_SECRET}}
"""

StartPages = Callable[..., PagesApp]


@pytest.fixture
def start_pages(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[StartPages]:
    """``start_pages(**settings_overrides)`` → a running app with the pages."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> PagesApp:
            return stack.enter_context(
                running_pages(tmp_path, database_url, redis_url, **overrides)
            )

        yield start


@pytest.fixture
def pages(start_pages: StartPages) -> PagesApp:
    return start_pages()


@pytest.fixture
def admin(pages: PagesApp) -> Iterator[Admin]:
    """A signed-in admin."""
    client = Admin(pages.base)
    response = client.sign_in()
    assert response.status_code == 303, response.text
    yield client
    client.close()


def row_state(html: str, link: str) -> str:
    found = re.search(rf'id="connection-{link}" data-state="([a-z_]+)"', html)
    assert found, f"no row for {link}"
    return found.group(1)


def start_connect(admin: Admin, link: str, provider_url: str) -> str:
    """Open the connect page and press its button; return the provider URL it sends to."""
    page = admin.get(f"/connections/{link}/connect")
    assert page.status_code == 200
    assert f'<form method="post" action="/connections/{link}/connect"' in page.text
    start = admin.post(f"/connections/{link}/connect")
    assert start.status_code == 303, start.text
    assert start.headers["Location"].startswith(provider_url)
    return str(start.headers["Location"])


def connect_oauth(pages: PagesApp, admin: Admin, link: str = "acme_crm") -> str:
    """Start the connect, let the fake provider send us back; return the callback path."""
    authorize = start_connect(admin, link, f"{pages.provider_url}/oauth/authorize?")
    at_provider = httpx.get(authorize, timeout=10)
    assert at_provider.status_code == 302
    back = at_provider.headers["Location"]
    assert back.startswith(f"{pages.base}/connections/callback?")
    return str(back).removeprefix(pages.base)


def auth_states(pages: PagesApp) -> int:
    """How many connect attempts the token store holds."""
    with pages.facade._sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ConnectionAuthState)) or 0)


NOT_THIS_SESSION = "does not belong to a connect started in this browser session"


# ---- sign-in -----------------------------------------------------------------------------


def test_pages_need_sign_in_and_a_wrong_password_is_refused(pages: PagesApp) -> None:
    client = Admin(pages.base)
    for path in ("/connections", "/connections/acme_crm", "/connections/acme_crm/edit"):
        response = client.get(path)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("/connections/login?next=")
    login_page = client.get("/connections/login")
    assert login_page.status_code == 200
    assert '<label for="password">Admin password</label>' in login_page.text
    assert 'type="password"' in login_page.text

    wrong = client.post("/connections/login", {"password": "not it", "next": "/connections"})
    assert wrong.status_code == 401
    assert "Wrong password." in wrong.text
    assert client.get("/connections").status_code == 303

    right = client.post(
        "/connections/login", {"password": PASSWORD, "next": "/connections/acme_crm"}
    )
    assert right.status_code == 303
    assert right.headers["Location"] == "/connections/acme_crm"
    cookie = right.headers["Set-Cookie"]
    assert "deskwire_admin=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/;" in cookie or cookie.endswith("Path=/")  # shared with the runs pages
    assert "Secure" not in cookie  # public_url is http:// here
    assert client.get("/connections").status_code == 200

    signed_out = client.post("/connections/logout")
    assert signed_out.status_code == 303
    assert client.get("/connections").status_code == 303
    client.close()


def test_sign_in_redirects_only_within_the_pages(pages: PagesApp) -> None:
    client = Admin(pages.base)
    client.get("/connections/login")
    for target in ("https://evil.example/", "//evil.example/x", "/webhooks/sdp"):
        client.http.cookies.clear()
        client.get("/connections/login")
        response = client.post("/connections/login", {"password": PASSWORD, "next": target})
        assert response.headers["Location"] == "/connections"
    client.close()


def test_failed_sign_ins_are_throttled(pages: PagesApp) -> None:
    client = Admin(pages.base)
    client.get("/connections/login")
    for _ in range(5):
        assert client.post("/connections/login", {"password": "guess"}).status_code == 401
    throttled = client.post("/connections/login", {"password": PASSWORD})
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text
    assert int(throttled.headers["Retry-After"]) > 0
    client.close()


def test_cookie_is_secure_behind_https(start_pages: StartPages) -> None:
    pages = start_pages(public_url="https://deskwire.example")
    client = Admin(pages.base)
    response = client.get("/connections/login")
    assert "Secure" in response.headers["Set-Cookie"]
    client.close()


def test_pages_are_off_without_an_admin_password(start_pages: StartPages) -> None:
    pages = start_pages(admin_password=None)
    for path in ("/connections", "/connections/login", "/connections/callback?state=x"):
        response = httpx.get(pages.base + path, timeout=10)
        assert response.status_code == 503
        assert "set DESKWIRE_ADMIN_PASSWORD" in response.text


# ---- a connections file with errors ------------------------------------------------------

BROKEN_CONNECTIONS = """\
connections:
  acme:
    service: slack
  pd:
    service: pagerduty
    per_user: maybe
  9pagerduty:
    name: PagerDuty
"""


def test_file_errors_are_listed_at_their_positions_in_file_order(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    config_path = tmp_path / "connections.yml"
    config_path.write_text(BROKEN_CONNECTIONS, encoding="utf-8")
    (tmp_path / "rules").mkdir()
    settings = Settings(
        database_url=database_url,
        broker_url=redis_url,
        admin_password=PASSWORD,
        secret_key="pages-test-secret-key",
        connections_file=config_path,
        rules_dir=tmp_path / "rules",
        webhook_tokens="unused-token",
    )
    with serving(build_web_app(settings)) as base:
        client = Admin(base)
        try:
            assert client.sign_in().status_code == 303
            page = client.get("/connections")
            detail = client.get("/connections/acme")
            client.get("/connections/login")  # a form, for the CSRF token
            revoke = client.post("/connections/acme/revoke")
        finally:
            client.close()
    # Never a 5xx: the pages show the file's errors (200 on a page, 409 on an action).
    assert page.status_code == 200, page.text
    assert detail.status_code == 200, detail.text
    assert "The connections file has errors" in detail.text
    assert revoke.status_code == 409, revoke.text
    assert "The connections file has errors" in revoke.text
    assert "The connections file has errors" in page.text
    listed = re.findall(r"<li>([^<]*)</li>", page.text)
    where = [item.split(": ", 1)[0].rsplit(":", 2)[-2:] for item in listed]
    # The link name is reported at its key (line 7), the missing client id and secret at
    # the key of their connection (line 2), the bad flag at its value — in file order.
    assert where == [["2", "3"], ["2", "3"], ["6", "15"], ["7", "3"]], listed
    assert "connections.9pagerduty: link name &#39;9pagerduty&#39; must start" in page.text


# ---- CSRF --------------------------------------------------------------------------------


def test_posts_without_the_csrf_token_are_refused(pages: PagesApp, admin: Admin) -> None:
    admin.get("/connections")
    for form in ({}, {"csrf_token": "forged-token-value-that-is-long-enough-xx"}):
        for path in (
            "/connections/ticketer/revoke",
            "/connections/ticketer/delete",
            "/connections/logout",
        ):
            response = admin.post(path, form, csrf=False)
            assert response.status_code == 400, path
            assert "security token (CSRF) is missing or does not match" in response.text
    # still signed in, nothing revoked or deleted
    assert row_state(admin.get("/connections").text, "ticketer") == "not_connected"
    stranger = Admin(pages.base)
    stranger.get("/connections/login")
    refused = stranger.post("/connections/login", {"password": PASSWORD}, csrf=False)
    assert refused.status_code == 400
    stranger.close()


# ---- list and details --------------------------------------------------------------------


def test_list_shows_every_connection_with_its_status(pages: PagesApp, admin: Admin) -> None:
    page = admin.get("/connections")
    assert page.status_code == 200
    html = page.text
    assert row_state(html, "acme_crm") == "not_connected"
    assert row_state(html, "acme_backup") == "not_configured"
    assert "ACME_BACKUP_CLIENT_ID is not set" in html
    assert row_state(html, "acme_jobs") == "not_connected"
    assert row_state(html, "ticketer") == "not_connected"
    assert "Acme CRM (backup tenant)" in html
    assert "OAuth 2.0" in html
    assert "API key" in html
    assert f"{pages.base}/connections/callback" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    css = admin.get("/connections/static/deskwire.css")
    assert css.status_code == 200
    assert ".badge-connected" in css.text


def test_details_show_how_it_authenticates_and_a_rule_step(pages: PagesApp, admin: Admin) -> None:
    pages.used_by["acme_crm"] = ["crm-sync"]
    page = admin.get("/connections/acme_crm")
    assert page.status_code == 200
    html = page.text
    for fact in (
        "contacts.read",
        "notes.write",
        "authorization code",
        "Token placement",
        "crm-sync",
    ):
        assert fact in html
    assert "connection: acme_crm" in html
    assert "uses: http.get" in html
    assert CLIENT_SECRET not in html
    missing = admin.get("/connections/acme_crmm")
    assert missing.status_code == 404
    assert "did you mean &#39;acme_crm&#39;" in missing.text


# ---- connect -----------------------------------------------------------------------------


def test_api_key_connects_through_the_form_and_never_shows_the_key(
    pages: PagesApp, admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    form = admin.get("/connections/ticketer/connect")
    assert form.status_code == 200
    assert '<label for="value-X-Api-Key">API key</label>' in form.text
    assert 'name="value-X-Api-Key" type="password"' in form.text

    empty = admin.post("/connections/ticketer/connect", {"value-X-Api-Key": " "})
    assert empty.status_code == 400
    assert "missing X-Api-Key" in empty.text

    saved = admin.post("/connections/ticketer/connect", {"value-X-Api-Key": API_KEY})
    assert saved.status_code == 303
    listing = admin.follow(saved)
    assert row_state(listing.text, "ticketer") == "connected"
    assert "ticketer: connected." in listing.text
    assert pages.facade.status("ticketer").state == ConnectionState.CONNECTED
    with pages.facade.client("ticketer") as client:
        request = client.build_request("GET", "https://ticketer.example/api/x")
        assert next(client.auth.sync_auth_flow(request)).headers["X-Api-Key"] == API_KEY

    for path in (
        "/connections",
        "/connections/ticketer",
        "/connections/ticketer/connect",
        "/connections/ticketer/edit",
        "/connections/ticketer/delete",
    ):
        assert admin.get(path).status_code == 200
    assert admin.bodies
    assert not [body for body in admin.bodies if API_KEY in body]
    assert API_KEY not in caplog.text


def test_oauth2_connects_through_the_provider_and_refuses_a_replay(
    pages: PagesApp, admin: Admin
) -> None:
    callback = connect_oauth(pages, admin)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    done = admin.get(callback)
    assert done.status_code == 303
    assert done.headers["Location"] == "/connections"
    listing = admin.follow(done)
    assert row_state(listing.text, "acme_crm") == "connected"
    assert "acme_crm: connected." in listing.text
    assert pages.provider.scopes_asked == ["contacts.read notes.write"]

    replay = admin.get(callback)
    assert replay.status_code == 400
    assert "already used (replayed)" in replay.text
    assert code not in replay.text
    assert "Traceback" not in replay.text
    assert pages.provider.code_calls == 1
    assert not [body for body in admin.bodies if any(t in body for t in pages.provider.issued)]


def test_callback_with_a_forged_state_or_a_denial_is_a_clear_400(
    pages: PagesApp, admin: Admin
) -> None:
    callback = connect_oauth(pages, admin)
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    stranger = Admin(pages.base)  # the callback needs no sign-in, and refuses all the same
    for client in (stranger, admin):
        mismatch = client.get(forged)
        assert mismatch.status_code == 400
        assert "Connect refused" in mismatch.text
        assert NOT_THIS_SESSION in mismatch.text
    assert admin.get(callback.replace("state=", "x=")).status_code == 400  # no state at all
    stranger.close()
    assert pages.provider.code_calls == 0

    pages.provider.deny = True
    denied = admin.get(connect_oauth(pages, admin))
    assert denied.status_code == 400
    assert "refused connection &#39;acme_crm&#39;: access_denied" in denied.text
    assert row_state(admin.get("/connections").text, "acme_crm") == "not_connected"


def test_a_link_from_another_site_starts_no_connect(pages: PagesApp, admin: Admin) -> None:
    """GET /connections/<link>/connect (a top-level cross-site link carries the Lax cookie)
    only shows the page; starting takes a POST with the session's CSRF token."""
    page = admin.get("/connections/acme_crm/connect?user=mallory@corp")
    assert page.status_code == 200
    assert "Location" not in page.headers
    assert 'name="csrf_token"' in page.text
    assert "Continue to Acme CRM" in page.text
    for form in ({}, {"csrf_token": "forged-token-value-that-is-long-enough-xx"}):
        refused = admin.post("/connections/acme_crm/connect", form, csrf=False)
        assert refused.status_code == 400
        assert "security token (CSRF)" in refused.text
    assert auth_states(pages) == 0  # no attempt was started
    assert pages.provider.scopes_asked == []


def test_callback_is_taken_only_in_the_session_that_started_it(
    pages: PagesApp, admin: Admin
) -> None:
    callback = connect_oauth(pages, admin)
    stranger = Admin(pages.base)  # not signed in
    other_admin = Admin(pages.base)  # signed in, but did not start this connect
    assert other_admin.sign_in().status_code == 303
    for client in (stranger, other_admin):
        refused = client.get(callback)
        assert refused.status_code == 400
        assert NOT_THIS_SESSION in refused.text
        assert "Traceback" not in refused.text
    stranger.close()
    other_admin.close()
    assert pages.provider.code_calls == 0  # nothing was exchanged or stored
    assert pages.facade.status("acme_crm").state == ConnectionState.NOT_CONNECTED
    assert auth_states(pages) == 1  # ... and the attempt was not spent
    done = admin.get(callback)  # the browser that started it finishes it
    assert done.status_code == 303
    assert "acme_crm: connected." in admin.follow(done).text
    assert pages.provider.code_calls == 1


def test_oauth1_callback_is_bound_to_the_session_too(pages: PagesApp, admin: Admin) -> None:
    state = FakeOAuth()
    with serving(state.app()) as url:
        text = pages.config_path.read_text(encoding="utf-8")
        text = text.replace(
            "\nconnections:\n", "\n" + OAUTH1_SERVICE.format(url=url) + "connections:\n"
        )
        text += "  old:\n    name: Old API\n    service: old_api\n"
        pages.config_path.write_text(text, encoding="utf-8")
        env = {**ENV, "OLD_KEY": CONSUMER_KEY, "OLD_SECRET": CONSUMER_SECRET}
        pages.facade.config = load_config(pages.config_path, env)
        authorize = start_connect(admin, "old", f"{url}/oauth1/authorize?oauth_token=")
        at_provider = httpx.get(authorize, timeout=10)
        back = str(at_provider.headers["Location"]).removeprefix(pages.base)
        assert set(parse_qs(urlsplit(back).query)) == {"oauth_token", "oauth_verifier"}
        stranger = Admin(pages.base)
        refused = stranger.get(back)
        stranger.close()
        assert refused.status_code == 400
        assert NOT_THIS_SESSION in refused.text
        assert state.oauth1_access_tokens == {}
        done = admin.get(back)
        assert done.status_code == 303
        assert "old: connected." in admin.follow(done).text
        assert len(state.oauth1_access_tokens) == 1


def test_client_credentials_fetch_a_token_on_connect(pages: PagesApp, admin: Admin) -> None:
    page = admin.get("/connections/acme_jobs/connect")
    assert "Fetch a token now" in page.text
    fetched = admin.post("/connections/acme_jobs/connect")
    assert fetched.status_code == 303
    assert row_state(admin.follow(fetched).text, "acme_jobs") == "connected"


def test_not_configured_connection_cannot_connect(pages: PagesApp, admin: Admin) -> None:
    page = admin.get("/connections/acme_backup/connect")
    assert page.status_code == 409
    assert "ACME_BACKUP_CLIENT_ID is not set" in page.text


# ---- revoke and delete -------------------------------------------------------------------


def test_revoke_forgets_the_tokens_at_the_provider_too(pages: PagesApp, admin: Admin) -> None:
    admin.get(connect_oauth(pages, admin))
    revoked = admin.post("/connections/acme_crm/revoke")
    assert revoked.status_code == 303
    listing = admin.follow(revoked)
    assert row_state(listing.text, "acme_crm") == "revoked"
    assert "revoked at the provider; tokens forgotten" in listing.text
    assert pages.provider.revoked  # the refresh token went to the revoke URL


def test_delete_is_refused_while_rules_use_it(pages: PagesApp, admin: Admin) -> None:
    pages.used_by["ticketer"] = ["nightly-sync", "vip-page"]
    admin.post("/connections/ticketer/connect", {"value-X-Api-Key": API_KEY})
    confirm = admin.get("/connections/ticketer/delete")
    assert "nightly-sync" in confirm.text
    assert "vip-page" in confirm.text
    refused = admin.post("/connections/ticketer/delete")
    assert refused.status_code == 409
    assert "Not deleted" in refused.text
    assert (
        '<code class="rule">nightly-sync</code>, <code class="rule">vip-page</code>' in refused.text
    )
    assert pages.facade.status("ticketer").state == ConnectionState.CONNECTED

    pages.used_by.clear()
    deleted = admin.post("/connections/ticketer/delete")
    assert deleted.status_code == 303
    listing = admin.follow(deleted)
    assert "connection-ticketer" not in listing.text
    assert "ticketer: deleted" in listing.text
    assert "ticketer:" not in pages.config_path.read_text().split("connections:", 1)[1]
    assert "# connections for the page tests" in pages.config_path.read_text()  # layout kept
    assert "ticketer" not in load_config(pages.config_path, ENV).connections


# ---- edit --------------------------------------------------------------------------------


def test_adding_a_scope_saves_it_and_revokes_the_connection(pages: PagesApp, admin: Admin) -> None:
    admin.get(connect_oauth(pages, admin))
    form = admin.get("/connections/acme_crm/edit")
    assert form.status_code == 200
    assert 'id="link_name" name="link_name" type="text" value="acme_crm" readonly' in form.text
    saved = admin.post(
        "/connections/acme_crm/edit",
        {
            "link_name": "acme_crm",
            "auth": "oauth2",
            "grant_type": "authorization_code",
            "name": "Acme Sales CRM",
            "scopes": "contacts.read\nnotes.write\ndeals.read\n",
        },
    )
    assert saved.status_code == 303
    detail = admin.follow(saved)
    assert "scopes added (deals.read): the connection is revoked" in detail.text
    assert "badge-revoked" in detail.text
    assert "Acme Sales CRM" in detail.text
    assert pages.provider.revoked
    text = pages.config_path.read_text()
    assert re.search(
        r"scopes: \[contacts.read, notes.write, deals.read\] +# what deskwire may do", text
    )
    spec = load_config(pages.config_path, ENV).connections["acme_crm"]
    assert spec.name == "Acme Sales CRM"
    assert spec.scopes == ("contacts.read", "notes.write", "deals.read")

    admin.get(connect_oauth(pages, admin))  # connect again: asks for the new scope
    assert pages.provider.scopes_asked[-1] == "contacts.read notes.write deals.read"
    assert pages.facade.status("acme_crm").state == ConnectionState.CONNECTED


def test_renaming_revokes_nothing(pages: PagesApp, admin: Admin) -> None:
    admin.get("/connections/ticketer/edit")
    saved = admin.post("/connections/ticketer/edit", {"name": "Ticketer (prod)"})
    assert saved.status_code == 303
    detail = admin.follow(saved)
    assert "ticketer: saved (name changed)." in detail.text
    assert "revoked" not in detail.text.lower().split("<main", 1)[1].split("<dl", 1)[0]
    assert "name: Ticketer (prod)" in pages.config_path.read_text()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"scopes": "contacts.read"}, "scopes can be added but not removed or edited: notes.write"),
        (
            {"grant_type": "client_credentials"},
            "the grant type cannot be changed (it is authorization_code)",
        ),
        ({"link_name": "acme_new"}, "the link name cannot be changed"),
        ({"auth": "api_key"}, "the auth type cannot be changed (it is oauth2)"),
    ],
)
def test_forbidden_edits_are_refused_with_the_reason(
    pages: PagesApp, admin: Admin, change: dict[str, str], reason: str
) -> None:
    before = pages.config_path.read_text()
    admin.get("/connections/acme_crm/edit")
    form = {
        "link_name": "acme_crm",
        "auth": "oauth2",
        "grant_type": "authorization_code",
        "name": "Acme CRM",
        "scopes": "contacts.read\nnotes.write",
        **change,
    }
    refused = admin.post("/connections/acme_crm/edit", form)
    assert refused.status_code == 400
    assert "This change is not allowed" in refused.text
    assert reason in refused.text.replace("&#39;", "'")
    assert pages.config_path.read_text() == before


# ---- headless Chromium -------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary: apt-get install chromium (or set DESKWIRE_TEST_CHROMIUM)")
    pytest.importorskip("websocket", reason="websocket-client is needed to drive chromium")
    driver = Browser(binary, tmp_path / "chromium-profile")
    yield driver
    driver.close()


def test_pages_in_headless_chromium(
    tmp_path: Path, redis_url: str, browser: Browser, upgraded_sqlite_file: Path
) -> None:
    shutil.copyfile(upgraded_sqlite_file, tmp_path / "browser.db")  # a migrated database
    database = f"sqlite:///{tmp_path / 'browser.db'}"
    engine = make_engine(database)
    upgrade(engine)  # as `deskwire db upgrade` does before the web app starts
    engine.dispose()
    with running_pages(tmp_path, database, redis_url) as pages:
        pages.used_by["ticketer"] = ["nightly-sync"]
        browser.goto(f"{pages.base}/connections")
        assert "/connections/login?next=" in browser.url()
        browser.screenshot(SCREENSHOTS / "login.png")

        browser.fill("#password", "wrong")
        browser.click("form button[type=submit].primary")
        assert "Wrong password." in browser.html()
        browser.fill("#password", PASSWORD)
        browser.click("form button[type=submit].primary")
        assert browser.url() == f"{pages.base}/connections"
        html = browser.html()
        assert 'data-state="not_configured"' in html
        browser.screenshot(SCREENSHOTS / "list.png")

        browser.goto(f"{pages.base}/connections/ticketer/connect")
        browser.screenshot(SCREENSHOTS / "connect_api_key.png")
        browser.fill("#value-X-Api-Key", API_KEY)
        browser.click("form button[type=submit].primary")
        assert row_state(browser.html(), "ticketer") == "connected"

        # OAuth 2.0 all the way: our page → its button (a POST) → the fake provider → our
        # callback → the list.
        browser.click("#connection-acme_crm a.button.primary")
        assert browser.url() == f"{pages.base}/connections/acme_crm/connect"
        assert "Continue to Acme CRM" in browser.html()
        browser.click("form button[type=submit].primary")
        assert browser.url() == f"{pages.base}/connections"
        html = browser.html()
        assert row_state(html, "acme_crm") == "connected"
        assert "acme_crm: connected." in html
        browser.screenshot(SCREENSHOTS / "list_connected.png")

        browser.goto(f"{pages.base}/connections/acme_crm")
        browser.screenshot(SCREENSHOTS / "detail.png")

        browser.goto(f"{pages.base}/connections/acme_crm/edit")
        browser.fill("#scopes", "contacts.read")
        browser.click("form button[type=submit].primary")
        assert "scopes can be added but not removed" in browser.html()
        browser.screenshot(SCREENSHOTS / "edit_refused.png")

        browser.goto(f"{pages.base}/connections/ticketer/delete")
        assert "nightly-sync" in browser.html()
        browser.screenshot(SCREENSHOTS / "delete_refused.png")

        for path in ("", "/ticketer", "/ticketer/edit", "/acme_crm"):
            browser.goto(f"{pages.base}/connections{path}")
            assert API_KEY not in browser.html()
