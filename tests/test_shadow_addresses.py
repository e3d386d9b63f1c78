"""Where a shadow step's request would go, through the worker's own connection clients:
resolved from the connections file alone, with no token read or fetched."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from deskwire.compose import live_connections
from deskwire.connection_clients import ConnectionClients
from deskwire.database import make_engine, session_factory
from deskwire.schema import upgrade
from deskwire.settings import Settings
from worker.shadow import would_send
from worker.steps import StepCall

KEY = "onprem-technician-key-123"
CONNECTIONS = """\
connections:
  sdp:
    service: sdp
    data_centre: eu
    portal: helpdesk
    client_id: ${UNSET_SHADOW_TEST_ID}
    client_secret: ${UNSET_SHADOW_TEST_SECRET}
    refresh_token: ${UNSET_SHADOW_TEST_REFRESH}
    scopes: [SDPOnDemand.requests.ALL]
  branch:
    service: sdp_onprem
    base_url: https://sdp.example.local:8080
    values: {authtoken: "${SHADOW_TEST_ONPREM_KEY}"}
  jira:
    service: jira_basic
    values: {username: bot@example.com, password: "${UNSET_SHADOW_TEST_JIRA}"}
"""


@pytest.fixture
def clients(
    tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ConnectionClients]:
    monkeypatch.setenv("SHADOW_TEST_ONPREM_KEY", KEY)
    path = tmp_path / "connections.yml"
    path.write_text(textwrap.dedent(CONNECTIONS))
    engine = make_engine(database_url)
    upgrade(engine)
    settings = Settings(
        database_url=database_url,
        connections_file=path,
        var_dir=tmp_path,
        broker_url=redis_url,
        secret_key="shadow-test-secret-key",
    )
    client = redis.Redis.from_url(redis_url)
    live = live_connections(settings, session_factory(engine), client)
    try:
        yield ConnectionClients(live, 5.0)
    finally:
        live().close()
        client.close()
        engine.dispose()


def _note(link: str | None = None) -> StepCall:
    args = {"request_id": "42", "description": "hello"}
    return StepCall("sdp.add_note", {**args, "connection": link} if link else args, "sdp")


def test_a_cloud_connection_never_connected_gives_its_data_centre_and_portal(
    clients: ConnectionClients,
) -> None:
    [sent] = would_send(clients, _note())
    assert (
        sent["url"] == "https://sdpondemand.manageengine.eu/app/helpdesk/api/v3/requests/42/notes"
    )
    assert sent["body"]["input_data"]["request_note"]["description"] == "hello"


def test_an_onprem_connection_uses_its_wrapper_and_leaves_its_key_out(
    clients: ConnectionClients,
) -> None:
    [sent] = would_send(clients, _note("branch"))
    assert sent["url"] == "https://sdp.example.local:8080/api/v3/requests/42/notes"
    assert "note" in sent["body"]["input_data"]  # on-premises builds' wrapper goes first
    assert KEY not in str(sent)
    assert "authtoken" not in {name.lower() for name in sent["headers"]}


def test_a_connection_without_a_base_url_says_so_in_place_of_the_host(
    clients: ConnectionClients,
) -> None:
    call = StepCall("http.get", {"connection": "jira", "url": "rest/api/3/myself"}, "sdp")
    [sent] = would_send(clients, call)
    assert sent["url"] == "https://<connection 'jira' has no base URL configured>/rest/api/3/myself"


def test_an_unknown_connection_of_an_http_step(clients: ConnectionClients) -> None:
    call = StepCall("http.post", {"connection": "nowhere", "url": "/hooks", "json": {}}, "sdp")
    [sent] = would_send(clients, call)
    assert sent["url"] == "https://<no connection 'nowhere' configured>/hooks"
