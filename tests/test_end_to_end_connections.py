"""The mission's whole loop through a connection: webhook → rule → OAuth 2.0 service →
note in SDP quoting the service's reply (issue 5, point 10)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import redis

from connections import Connections, load_config
from deskwire.database import make_engine, session_factory
from tests.fakes.oauth import CLIENT_ID, CLIENT_SECRET, FakeOAuth, running_oauth
from tests.fakes.sdp import FakeSdp
from tests.integration import deployment, sdp_connections_yaml

pytestmark = pytest.mark.integration

RULE = """\
rules:
  - id: enrich
    on: [request.created]
    actions:
      - id: lookup
        uses: http.get
        with:
          connection: acme_crm
          url: "{{ payload.crm_url }}/api/echo"
          params: {requester: "{{ request.requester.email_id }}"}
      - uses: sdp.add_note
        with:
          request_id: "{{ request.id }}"
          description: "CRM answered {{ steps.lookup.status }}: ok={{ steps.lookup.json.ok }},
            auth {{ steps.lookup.json.prefix }}"
"""


@pytest.fixture
def provider() -> Iterator[tuple[str, FakeOAuth]]:
    with running_oauth() as running:
        yield running.url, running.state


def test_rule_calls_an_oauth2_service_through_a_connection_and_quotes_it_in_sdp(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    provider: tuple[str, FakeOAuth],
) -> None:
    crm_url, crm = provider

    def connections_file(fake_url: str, fake: FakeSdp) -> str:
        acme = textwrap.dedent(
            f"""\
            services:
              acme:
                name: Acme CRM
                auth: oauth2
                grant_type: authorization_code
                token_placement: header
                client_auth: post
                authorize_url: {crm_url}/oauth/authorize
                token_url: {crm_url}/oauth/token
                scope_delimiter: space
                client_id: ${{ACME_CLIENT_ID}}
                client_secret: ${{ACME_CLIENT_SECRET}}
            """
        )
        sdp = sdp_connections_yaml(fake_url, fake)
        extra = "  acme_crm:\n    name: Acme CRM\n    service: acme\n    scopes: [contacts.read]\n"
        return acme + sdp + extra

    env = {"ACME_CLIENT_ID": CLIENT_ID, "ACME_CLIENT_SECRET": CLIENT_SECRET}
    with deployment(
        tmp_path, database_url, redis_url, rules=RULE, connections=connections_file,
        extra_env=env, start_worker=False,
    ) as d:  # fmt: skip
        # An admin connects Acme once (authorization code + PKCE), as the pages or CLI do.
        engine = make_engine(database_url)
        admin = Connections(
            load_config(d.settings.connections_file, env),
            session_factory(engine),
            redis.Redis.from_url(redis_url),
            [d.env["DESKWIRE_SECRET_KEY"]],
            public_url=d.settings.public_url,
        )
        consent = httpx.get(admin.authorize_url("acme_crm"))
        assert consent.status_code == 302
        admin.complete_callback(dict(parse_qsl(urlsplit(consent.headers["Location"]).query)))
        assert admin.status("acme_crm").connected
        # The provider drops the access token: the worker's call gets a 401, refreshes once
        # and retries.
        crm.access_tokens.clear()
        d.start_worker()
        body = {
            "event": "request.created",
            "event_id": "conn-1",
            "crm_url": crm_url,
            "request": {"id": "808", "subject": "S", "requester": {"email_id": "ada@example.com"}},
        }
        assert d.post(body).status_code == 202
        event = d.wait_for("conn-1")
        assert event.status == "done", event.error
        assert [n["description"] for n in d.fake.notes] == [
            "CRM answered 200: ok=True, auth Bearer"
        ]
        assert crm.refresh_calls == 1
        assert crm.api_calls[-1]["args"] == {"requester": "ada@example.com"}
        steps = {s.step_id: s for s in d.step_runs(event.id)}
        assert steps["lookup"].output["status"] == 200
        # Nothing secret in the run history.
        history = str(steps["lookup"].output) + str(event.error)
        assert not any(token in history for token in crm.access_tokens | crm.refresh_tokens)
        assert CLIENT_SECRET not in history


def test_step_through_a_connection_that_needs_reconnecting_fails_naming_it(
    tmp_path: Path, database_url: str, redis_url: str, provider: tuple[str, FakeOAuth]
) -> None:
    crm_url, _crm = provider

    def connections_file(fake_url: str, fake: FakeSdp) -> str:
        return (
            sdp_connections_yaml(fake_url, fake)
            + ("  acme_crm:\n    name: Acme CRM\n    service: acme\n")
            + textwrap.dedent(
                f"""\
            services:
              acme:
                name: Acme CRM
                auth: oauth2
                grant_type: authorization_code
                authorize_url: {crm_url}/oauth/authorize
                token_url: {crm_url}/oauth/token
                client_id: ${{ACME_CLIENT_ID}}
                client_secret: ${{ACME_CLIENT_SECRET}}
            """
            )
        )

    env = {"ACME_CLIENT_ID": CLIENT_ID, "ACME_CLIENT_SECRET": CLIENT_SECRET}
    with deployment(
        tmp_path, database_url, redis_url, rules=RULE, connections=connections_file, extra_env=env
    ) as d:
        request = {"id": "9", "subject": "S", "requester": {"email_id": "a@b.c"}}
        d.post(
            {"event": "request.created", "event_id": "nc-1", "crm_url": crm_url, "request": request}
        )
        event = d.wait_for("nc-1")
        assert event.status == "failed"
        assert "acme_crm" in (event.error or "")
        assert d.fake.notes == []
