"""Every kind of connections-file error points at the exact key or value at fault.

The rule: the key itself for a bad, unknown or duplicate key; the value for a bad value or
a bad type (the key, when the value was left empty); the key of the enclosing mapping for a
missing required key (the list item itself when the mapping is an item of a list); where
the parser stopped for YAML syntax. Errors come sorted by file, line and column.
"""

from __future__ import annotations

import pytest

from connections import ConnectionsConfigError, parse_config

SLACK = "connections:\n  sl:\n    service: slack\n    client_id: a\n    client_secret: b\n"

# (error kind, file text, "line:column", field path, a piece of the message)
POSITIONS = [
    pytest.param(
        "connections:\n  pd: [unclosed\n",
        "3:1",
        "(yaml)",
        "flow sequence (from line 2, column 7)",
        id="yaml-syntax-unclosed",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n   name: x\n",
        "4:4",
        "(yaml)",
        "expected <block end>",
        id="yaml-syntax-indentation",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n  pd:\n    service: pagerduty\n",
        "4:3",
        "connections.pd",
        "duplicate key 'pd'",
        id="duplicate-key",
    ),
    pytest.param(
        "connections:\n  a:\n    service: pagerduty\n  9pagerduty:\n    name: PagerDuty\n",
        "4:3",
        "connections.9pagerduty",
        "link name '9pagerduty' must start with a lower-case letter",
        id="bad-key-link-name",
    ),
    pytest.param(
        "services:\n  Acme:\n    auth: basic\n",
        "2:3",
        "services.Acme",
        "service link name must start",
        id="bad-key-service-name",
    ),
    pytest.param(
        "services:\n  slack:\n    auth: basic\n",
        "2:3",
        "services.slack",
        "is a built-in service",
        id="bad-key-builtin-service",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n    scopes: [a]\n",
        "4:5",
        "connections.pd.scopes",
        "is not used by auth type api_key",
        id="bad-key-other-auth-type",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n    sevrice_note: x\n",
        "4:5",
        "connections.pd.sevrice_note",
        "unknown key",
        id="unknown-key",
    ),
    pytest.param(
        "connectoins: {}\n",
        "1:1",
        "(file).connectoins",
        "did you mean 'connections'?",
        id="unknown-key-top-level",
    ),
    pytest.param(
        SLACK + "    scope_delimiter: semicolon\n",
        "6:22",
        "connections.sl.scope_delimiter",
        "'semicolon' is not one of comma, space, plus",
        id="bad-value-choice",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n    name: " + "x" * 51 + "\n",
        "4:11",
        "connections.pd.name",
        "is 51 characters long",
        id="bad-value-too-long",
    ),
    pytest.param(
        SLACK.replace("client_id: a", "client_id: ${BROKEN"),
        "4:16",
        "connections.sl.client_id",
        "malformed ${...} reference",
        id="bad-value-env-reference",
    ),
    pytest.param(
        "services:\n  acme:\n    auth: api_key\n    params:\n"
        "      - {name: k, placement: query}\n      - {name: k, placement: query}\n",
        "6:16",
        "services.acme.params[1].name",
        "parameter 'k' is declared twice",
        id="bad-value-duplicate-param",
    ),
    pytest.param(
        "services:\n  acme:\n    auth: oauth2\n    token_url: https://a.example/t\n"
        "    grant_types: [client_credentials, implicit]\n",
        "5:39",
        "services.acme.grant_types[1]",
        "'implicit' is not one of authorization_code, client_credentials",
        id="bad-value-list-item",
    ),
    pytest.param(
        "connections:\n  pd:\n    service:\n    name: PD\n",
        "3:5",
        "connections.pd.service",
        "is required",
        id="empty-value-at-its-key",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n    per_user: maybe\n",
        "4:15",
        "connections.pd.per_user",
        "must be true or false",
        id="bad-type-flag",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n    name: [a]\n",
        "4:11",
        "connections.pd.name",
        "must be a string, not a list",
        id="bad-type-text",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: [pagerduty]\n",
        "3:14",
        "connections.pd.service",
        "must be a string, not a list",
        id="bad-type-service",
    ),
    pytest.param(
        SLACK + "    scopes: read\n",
        "6:13",
        "connections.sl.scopes",
        "must be a list",
        id="bad-type-list",
    ),
    pytest.param(
        SLACK + "    scopes: [a, {x: 1}]\n",
        "6:17",
        "connections.sl.scopes[1]",
        "must be a string",
        id="bad-type-list-item",
    ),
    pytest.param(
        "connections:\n  pd: 5\n",
        "2:7",
        "connections.pd",
        "must be a mapping",
        id="bad-type-connection",
    ),
    pytest.param(
        "services:\n  acme:\n    auth: api_key\n    params:\n      - k\n",
        "5:9",
        "services.acme.params[0]",
        "must be a mapping",
        id="bad-type-param-item",
    ),
    pytest.param(
        "connections:\n  other:\n    service: pagerduty\n  pd:\n    name: PagerDuty\n",
        "4:3",
        "connections.pd.service",
        "is required",
        id="missing-required-at-connection-key",
    ),
    pytest.param(
        "connections:\n  acme:\n    name: Acme\n    service: slack\n",
        "2:3",
        "connections.acme.client_id",
        "is required for service slack",
        id="missing-required-client-id",
    ),
    pytest.param(
        "services:\n  acme:\n    name: Acme\n    auth: oauth2\n"
        "    authorize_url: https://a.example/auth\n",
        "2:3",
        "services.acme.token_url",
        "is required",
        id="missing-required-service-key",
    ),
    pytest.param(
        "services:\n  acme:\n    auth: api_key\n    params:\n      - {name: k}\n",
        "5:9",
        "services.acme.params[0].placement",
        "is required",
        id="missing-required-in-list-item",
    ),
    pytest.param(
        "connections:\n  pd:\n    service: pagerduty\n    values:\n      token: x\n",
        "4:5",
        "connections.pd.values.Authorization",
        "is required",
        id="missing-required-at-values-key",
    ),
    pytest.param(
        "connections:\n  pd:\n    name: PagerDuty\n    service: pagerdutty\n",
        "4:14",
        "connections.pd.service",
        "unknown service 'pagerdutty'; did you mean 'pagerduty'?",
        id="bad-reference-service",
    ),
]


@pytest.mark.parametrize(("text", "position", "field", "message"), POSITIONS)
def test_error_position(text: str, position: str, field: str, message: str) -> None:
    with pytest.raises(ConnectionsConfigError) as caught:
        parse_config(text, {}, source="connections.yml")
    issues = [i for i in caught.value.errors if i.field == field and message in i.message]
    assert issues, "\n".join(str(i) for i in caught.value.errors)
    assert f"{issues[0].line}:{issues[0].column}" == position, str(issues[0])


def test_errors_are_sorted_by_line_and_column() -> None:
    # Found in the order 2, 2, 8 (per_user is read first), 7 (the unknown key of `values`),
    # 6 (its missing key); listed in file order.
    text = (
        "connections:\n"
        "  acme:\n"
        "    service: slack\n"
        "  pd:\n"
        "    service: pagerduty\n"
        "    values:\n"
        "      token: x\n"
        "    per_user: maybe\n"
    )
    with pytest.raises(ConnectionsConfigError) as caught:
        parse_config(text, {}, source="connections.yml")
    positions = [(i.line, i.column) for i in caught.value.errors]
    assert positions == sorted(positions)
    assert positions == [(2, 3), (2, 3), (6, 5), (7, 7), (8, 15)]
    lines = str(caught.value).splitlines()[1:]
    assert [line.strip().split(":")[1:3] for line in lines] == [
        [str(line), str(column)] for line, column in positions
    ]


def test_a_duplicate_key_does_not_hide_the_other_errors() -> None:
    text = (
        "connections:\n"
        "  pd:\n"
        "    service: pagerduty\n"
        "  pd:\n"
        "    service: pagerduty\n"
        "  sl:\n"
        "    service: slackk\n"
    )
    with pytest.raises(ConnectionsConfigError) as caught:
        parse_config(text, {}, source="connections.yml")
    assert [str(issue) for issue in caught.value.errors] == [
        "connections.yml:4:3: connections.pd: duplicate key 'pd'",
        "connections.yml:7:14: connections.sl.service: unknown service 'slackk'; "
        "did you mean 'slack'?",
    ]
