"""Each auth type is one spec type holding only its fields, with one strategy."""

from __future__ import annotations

import dataclasses

import pytest

from connections import (
    ApiKeyConnection,
    ApiKeyService,
    BasicConnection,
    BasicService,
    ConnectKind,
    OAuth1Connection,
    OAuth1Service,
    OAuth2Connection,
    OAuth2Service,
    builtin_services,
    parse_config,
)
from connections.auth_oauth1 import OAuth1Strategy
from connections.auth_oauth2 import OAuth2Strategy
from connections.auth_static import ApiKeyStrategy, BasicStrategy
from connections.auth_types import strategy_for
from connections.spec_building import build_connection_spec, build_service_spec
from connections.specs import edit_role
from tests.connections.conftest import ConnectionsFactory

FOUR = """
services:
  o2:
    auth: oauth2
    authorize_url: https://o2.example.com/authorize
    token_url: https://o2.example.com/token
    client_id: id
    client_secret: secret
  o1:
    auth: oauth1
    request_token_url: https://o1.example.com/request
    authorize_url: https://o1.example.com/authorize
    access_token_url: https://o1.example.com/access
    consumer_key: ck
    consumer_secret: cs
  key:
    auth: api_key
    params: [{name: X-Key, placement: header}]
  basic:
    auth: basic
connections:
  o2_conn: {service: o2, scopes: [a.read]}
  o1_conn: {service: o1}
  key_conn: {service: key}
  basic_conn: {service: basic}
"""

EXPECTED = {
    "o2_conn": (OAuth2Service, OAuth2Connection, OAuth2Strategy, ConnectKind.REDIRECT),
    "o1_conn": (OAuth1Service, OAuth1Connection, OAuth1Strategy, ConnectKind.REDIRECT),
    "key_conn": (ApiKeyService, ApiKeyConnection, ApiKeyStrategy, ConnectKind.FORM),
    "basic_conn": (BasicService, BasicConnection, BasicStrategy, ConnectKind.FORM),
}


@pytest.mark.parametrize("link", sorted(EXPECTED))
def test_each_auth_type_has_its_spec_types_and_strategy(
    make: ConnectionsFactory, link: str
) -> None:
    conns = make(FOUR)
    spec = conns.spec(link)
    service_type, connection_type, strategy_type, kind = EXPECTED[link]
    assert type(spec.service) is service_type
    assert type(spec) is connection_type
    assert spec.auth == service_type.auth
    assert spec.connect_kind is kind
    assert type(strategy_for(conns._keeper, spec)) is strategy_type


def test_types_hold_only_their_own_fields() -> None:
    config = parse_config(FOUR, {})
    own = {
        name: {f.name for f in dataclasses.fields(spec)}
        for name, spec in config.connections.items()
    }
    assert "scopes" in own["o2_conn"]
    assert "scopes" not in own["key_conn"]
    assert "consumer_key" in own["o1_conn"]
    assert "consumer_key" not in own["o2_conn"]
    assert "values" in own["basic_conn"]
    assert "values" not in own["o1_conn"]
    assert not hasattr(config.connections["basic_conn"], "grant_type")
    assert config.connections["o2_conn"].token_grant == "authorization_code"
    assert config.connections["key_conn"].token_grant is None
    assert "params" not in {f.name for f in dataclasses.fields(config.services["o2"])}


def test_client_credentials_connection_fetches_its_own_token() -> None:
    config = parse_config(
        """
services:
  cc:
    auth: oauth2
    grant_type: client_credentials
    token_url: https://cc.example.com/token
    client_id: id
    client_secret: secret
connections:
  cc_conn: {service: cc}
""",
        {},
    )
    assert config.connections["cc_conn"].connect_kind is ConnectKind.CLIENT_CREDENTIALS


def test_credential_fields_come_from_the_type() -> None:
    config = parse_config(FOUR, {})
    key = config.connections["key_conn"].credential_fields
    basic = config.connections["basic_conn"].credential_fields
    assert [(f.name, f.secret) for f in key] == [("X-Key", True)]
    assert [(f.name, f.secret) for f in basic] == [("username", False), ("password", True)]
    assert config.connections["o2_conn"].credential_fields == ()


def test_builders_refuse_a_field_the_type_does_not_have() -> None:
    builtin = builtin_services()["jira_basic"]
    with pytest.raises(TypeError, match="BasicService has no field scopes"):
        build_service_spec(
            {"auth": "basic", "key": "b", "name": "B", "builtin": False, "scopes": ("a",)}
        )
    # Empty values of other types' fields are what the reader hands in: they are dropped.
    spec = build_service_spec(
        {"auth": "basic", "key": "b", "name": "B", "builtin": False, "scopes": ()}
    )
    assert isinstance(spec, BasicService)
    with pytest.raises(TypeError, match="BasicConnection has no field scopes"):
        build_connection_spec({"link_name": "x", "name": "x", "service": builtin, "scopes": ("a",)})


def test_every_oauth2_connection_field_says_how_an_edit_counts() -> None:
    roles = {f.name: edit_role(f) for f in dataclasses.fields(OAuth2Connection)}
    assert roles["scopes"] == "revokes"
    assert roles["grant_type"] == "fixed"
    assert roles["name"] == "free"
    assert roles["file"] is None  # where it was declared is not an edit
