"""connections.yml: good files load into frozen records; bad ones report file:line:field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connections import (
    ConnectionsConfigError,
    NotEditableError,
    check_connection_edit,
    check_service_edit,
    load_config,
    parse_config,
)

GOOD = """\
services:
  acme:
    name: Acme CRM
    auth: oauth2
    grant_type: authorization_code
    authorize_url: https://acme.example/oauth/authorize
    token_url: https://acme.example/oauth/token
    scope_delimiter: space
    client_id: ${ACME_CLIENT_ID}
    client_secret: ${ACME_CLIENT_SECRET}
  tickets:
    auth: api_key
    params:
      - {name: X-Api-Key, display_name: API key, placement: header}
      - {name: account, display_name: Account, placement: query}
connections:
  sdp:
    name: ServiceDesk Plus
    service: sdp
    data_centre: eu
    portal: ithelpdesk
    client_id: ${SDP_CLIENT_ID}
    client_secret: ${SDP_CLIENT_SECRET}
    refresh_token: ${SDP_REFRESH_TOKEN}
    scopes: [SDPOnDemand.requests.ALL]
  acme_crm:
    name: Acme CRM
    service: acme
    scopes: [contacts.read, notes.write]
  tickets_main:
    service: tickets
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConnectionsConfigError) as caught:
        parse_config(text, env or {}, source="connections.yml")
    return [str(issue) for issue in caught.value.errors]


def test_good_file_loads_and_unset_env_marks_not_configured(tmp_path: Path) -> None:
    path = tmp_path / "connections.yml"
    path.write_text(GOOD)
    config = load_config(path, {"ACME_CLIENT_ID": "id", "ACME_CLIENT_SECRET": "secret"})
    assert set(config.connections) == {"sdp", "acme_crm", "tickets_main"}
    sdp = config.connections["sdp"]
    assert sdp.problem == "SDP_CLIENT_ID, SDP_CLIENT_SECRET are not set"
    assert sdp.token_url == "https://accounts.zoho.eu/oauth/v2/token"
    assert sdp.base_url == "https://sdpondemand.manageengine.eu"
    assert sdp.refresh_token is None  # optional bootstrap: unset is not a problem
    acme = config.connections["acme_crm"]
    assert acme.problem is None
    assert acme.client_secret is not None
    assert acme.client_secret.get_secret_value() == "secret"
    assert acme.scope_string == "contacts.read notes.write"
    assert [p.placement for p in config.connections["tickets_main"].service.params] == [
        "header",
        "query",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        acme.name = "other"  # type: ignore[misc]


def test_missing_file_is_an_empty_configuration(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.yml", {})
    assert not config.exists
    assert not config.connections
    assert "sdp" in config.services


def test_single_unset_variable_message() -> None:
    config = parse_config(
        "connections:\n  sdp:\n    service: sdp\n    client_id: ${SDP_CLIENT_ID}\n"
        "    client_secret: fixed\n",
        {},
    )
    assert config.connections["sdp"].problem == "SDP_CLIENT_ID is not set"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "connections:\n  Bad-Name:\n    service: pagerduty\n",
            "connections.yml:2:3: connections.Bad-Name: link name 'Bad-Name' must start",
            id="bad-link-name",
        ),
        pytest.param(
            "connections:\n  pd:\n    service: pagerduty\n    name: " + "x" * 51 + "\n",
            "connections.yml:4:11: connections.pd.name: is 51 characters long; at most 50",
            id="name-too-long",
        ),
        pytest.param(
            "connections:\n  pd:\n    service: pagerdutty\n",
            "connections.yml:3:14: connections.pd.service: unknown service 'pagerdutty'; "
            "did you mean 'pagerduty'?",
            id="unknown-service",
        ),
        pytest.param(
            "services:\n  acme:\n    auth: oauth3\n",
            "connections.yml:3:11: services.acme.auth: 'oauth3' is not one of api_key, basic, "
            "oauth1, oauth2; did you mean 'oauth2'?",
            id="unknown-auth-type",
        ),
        pytest.param(
            "connections:\n  slack:\n    service: slack\n    client_id: a\n    client_secret: b\n"
            "    scope_delimiter: semicolon\n",
            "connections.yml:6:22: connections.slack.scope_delimiter: 'semicolon' is not one of "
            "comma, space, plus",
            id="bad-scope-delimiter",
        ),
        pytest.param(
            "connections:\n  pd:\n    name: PagerDuty\n",
            "connections.yml:2:3: connections.pd.service: is required",
            id="missing-service",
        ),
        pytest.param(
            "services:\n  acme:\n    auth: oauth2\n    authorize_url: https://a.example/auth\n",
            "connections.yml:2:3: services.acme.token_url: is required",
            id="missing-token-url",
        ),
        pytest.param(
            "connections:\n  pd:\n    service: pagerduty\n  pd:\n    service: pagerduty\n",
            "connections.yml:4:3: connections.pd: duplicate key 'pd'",
            id="duplicate-link-name",
        ),
        pytest.param(
            "connections:\n  pd: [unclosed\n",
            "connections.yml:3:1: (yaml):",
            id="bad-yaml",
        ),
        pytest.param(
            "connections:\n  pd:\n    service: pagerduty\n    sevrice_note: x\n",
            "connections.yml:4:5: connections.pd.sevrice_note: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            "connections:\n  pd:\n    service: pagerduty\n    scopes: [a]\n",
            "connections.yml:4:5: connections.pd.scopes: is not used by auth type api_key",
            id="key-of-other-auth-type",
        ),
        pytest.param(
            "connections:\n  acme:\n    service: slack\n    client_id: ${BROKEN\n"
            "    client_secret: b\n",
            "connections.yml:4:16: connections.acme.client_id: malformed ${...} reference",
            id="malformed-env-reference",
        ),
        pytest.param(
            "connections:\n  op:\n    service: sdp_onprem\n",
            "connections.yml:2:3: connections.op.base_url: is required for service sdp_onprem",
            id="onprem-needs-base-url",
        ),
        pytest.param(
            "connections:\n  sdp:\n    service: sdp\n    client_id: a\n    client_secret: b\n"
            "    data_centre: mars\n",
            "connections.yml:6:18: connections.sdp.data_centre: 'mars' is not one of us, eu",
            id="unknown-data-centre",
        ),
        pytest.param(
            "services:\n  acme:\n    auth: api_key\n    params:\n"
            "      - {name: k, placement: cookie}\n",
            "connections.yml:5:30: services.acme.params[0].placement: 'cookie' is not one of "
            "query, header, form",
            id="bad-api-key-placement",
        ),
        pytest.param(
            "services:\n  slack:\n    auth: basic\n",
            "connections.yml:2:3: services.slack: 'slack' is a built-in service",
            id="shadowing-builtin",
        ),
        pytest.param(
            "connections:\n  acme:\n    service: slack\n",
            "connections.yml:2:3: connections.acme.client_id: is required for service slack",
            id="oauth2-without-client",
        ),
        pytest.param(
            "connections:\n  op:\n    service: sdp_onprem\n    base_url: https://sdp.example\n"
            "    key_header: X-Key\n",
            "connections.yml:5:17: connections.op.key_header: 'X-Key' is not one of "
            "authtoken, TECHNICIAN_KEY",
            id="onprem-unknown-key-header",
        ),
        pytest.param(
            "connections:\n  pd:\n    service: pagerduty\n    key_header: TECHNICIAN_KEY\n",
            "connections.yml:4:17: connections.pd.key_header: only applies to the sdp_onprem",
            id="key-header-outside-onprem",
        ),
        pytest.param(
            "connections:\n  sdp:\n    service: sdp\n    client_id: a\n    client_secret: b\n"
            "    key_header: authtoken\n",
            "connections.yml:6:5: connections.sdp.key_header: is not used by auth type oauth2",
            id="key-header-on-cloud",
        ),
    ],
)
def test_bad_forms_name_file_line_and_field(text: str, expected: str) -> None:
    found = errors_of(text)
    assert any(line.startswith(expected) for line in found), found


def test_all_errors_are_reported_at_once() -> None:
    text = (
        "connections:\n"
        "  Bad:\n    service: pagerduty\n"
        "  pd:\n    service: nope\n"
        "  long:\n    service: pagerduty\n    name: " + "y" * 60 + "\n"
    )
    found = errors_of(text)
    assert len(found) == 3, found
    assert [line.split(":")[1] for line in found] == ["2", "5", "8"]


def test_error_message_never_holds_secret_values() -> None:
    text = (
        "connections:\n  acme:\n    service: slack\n    client_id: a\n"
        "    client_secret: ${S}\n    bogus: 1\n"
    )
    found = errors_of(text, {"S": "top-secret-value"})
    assert all("top-secret-value" not in line for line in found)


def test_builtin_catalogue_has_every_data_centre_and_service() -> None:
    config = parse_config("", {})
    services = config.services
    for key in ("sdp", "sdp_onprem", "slack", "microsoft_graph", "jira", "pagerduty", "github"):
        assert key in services
    assert sorted(services["sdp"].data_centres) == sorted(
        ["us", "eu", "in", "au", "jp", "ca", "sa", "uk", "cn", "ae"]
    )
    pd = services["pagerduty"].params[0]
    assert pd.render("k123") == "Token token=k123"
    assert services["sdp"].token_prefix == "Zoho-oauthtoken"


def test_overrides_and_tenant_fill_templates() -> None:
    config = parse_config(
        """
connections:
  sdp:
    service: sdp
    data_centre: ca
    accounts_url: https://accounts.zoho.ca
    base_url: https://help.example.com
    client_id: a
    client_secret: b
  graph:
    service: microsoft_graph
    grant_type: client_credentials
    tenant: contoso.onmicrosoft.com
    client_id: a
    client_secret: b
    scopes: [https://graph.microsoft.com/.default]
""",
        {},
    )
    sdp = config.connections["sdp"]
    assert sdp.token_url == "https://accounts.zoho.ca/oauth/v2/token"
    assert sdp.base_url == "https://help.example.com"
    graph = config.connections["graph"]
    assert graph.token_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert graph.grant_type == "client_credentials"


def _two(old_extra: str, new_extra: str) -> tuple[object, object]:
    base = (
        "services:\n  acme:\n    auth: oauth2\n    authorize_url: https://a.example/a\n"
        "    token_url: https://a.example/t\n    client_id: a\n    client_secret: b\n{svc}"
        "connections:\n  crm:\n    service: acme\n{conn}"
    )
    old = parse_config(base.format(svc="", conn=old_extra), {})
    new = parse_config(base.format(svc="", conn=new_extra), {})
    return old.connections["crm"], new.connections["crm"]


def test_edit_rules_scopes_added_revokes_removed_refused() -> None:
    old, new = _two("    scopes: [a]\n", "    scopes: [a, b]\n    name: New name\n")
    outcome = check_connection_edit(old, new)  # type: ignore[arg-type]
    assert outcome.revokes
    assert "scopes" in outcome.changed
    assert "b" in (outcome.reason or "")
    with pytest.raises(NotEditableError, match="scopes can be added but not removed"):
        check_connection_edit(new, old)  # type: ignore[arg-type]
    same, renamed = _two("    scopes: [a]\n", "    scopes: [a]\n    name: Renamed\n")
    cosmetic = check_connection_edit(same, renamed)  # type: ignore[arg-type]
    assert not cosmetic.revokes


def test_edit_rules_fixed_fields() -> None:
    config = parse_config(
        """
services:
  one:
    auth: api_key
    params: [{name: k, placement: header}, {name: j, placement: query}]
  two:
    auth: basic
connections:
  a:
    service: one
  b:
    service: two
""",
        {},
    )
    a = config.connections["a"]
    b = config.connections["b"]
    with pytest.raises(NotEditableError) as caught:
        check_connection_edit(a, dataclasses.replace(b, link_name="z"))
    text = str(caught.value)
    assert "link name" in text
    assert "service" in text
    assert "auth type" in text
    one = config.services["one"]
    fewer = dataclasses.replace(one, params=one.params[:1])
    with pytest.raises(NotEditableError, match="not deleted: j"):
        check_service_edit(one, fewer)
    more = dataclasses.replace(
        one, params=(*one.params, dataclasses.replace(one.params[0], name="n"))
    )
    assert check_service_edit(one, more).revokes
    with pytest.raises(NotEditableError, match="built-in"):
        check_service_edit(config.services["slack"], config.services["slack"])


def test_onprem_key_header_for_older_builds() -> None:
    config = parse_config(
        "connections:\n  op:\n    service: sdp_onprem\n    base_url: https://sdp.example\n"
        "    key_header: TECHNICIAN_KEY\n    values: {authtoken: k}\n",
        {},
    )
    assert config.connections["op"].key_header == "TECHNICIAN_KEY"
    assert config.connections["op"].service.sdp == "onprem"
