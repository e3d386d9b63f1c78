"""The connections list and one connection's page (never a secret, not even masked)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask import render_template
from flask.typing import ResponseReturnValue

from connections import Connections, ConnectionsError, ConnectionSpec
from connections.yamlfile import dump_yaml
from webhooks.pages.blueprint import bp, facade, pages_setup

__all__ = ["detail", "index"]


@dataclass(frozen=True)
class _Row:
    """One line of the connections list."""

    link_name: str
    name: str
    service_name: str
    auth: str
    grant_type: str | None
    state: str
    message: str
    used_by: tuple[str, ...]
    static: bool


def _row(connections: Connections, spec: ConnectionSpec, used: Sequence[str]) -> _Row:
    try:
        status = connections.status(spec.link_name)
        state, message = status.state.value, status.message
    except ConnectionsError as exc:
        state, message = "error", str(exc)
    return _Row(
        link_name=spec.link_name,
        name=spec.name,
        service_name=spec.service.name,
        auth=spec.auth,
        grant_type=spec.token_grant,
        state=state,
        message=message,
        used_by=tuple(used),
        static=spec.static_credentials,
    )


@bp.get("")
def index() -> ResponseReturnValue:
    """Every declared connection with its status and actions."""
    connections = facade()
    used = pages_setup().used_by()
    rows = [
        _row(connections, spec, used.get(link, ()))
        for link, spec in sorted(connections.config.connections.items())
    ]
    return render_template(
        "connections/list.html",
        rows=rows,
        config_path=connections.config.path,
        config_exists=connections.config.exists,
        redirect_uri=connections.redirect_uri,
    )


def _rule_step(connections: Connections, spec: ConnectionSpec) -> str:
    """A rule step that calls through the connection, ready to paste under ``actions:``."""
    url = "https://api.example.com/path"
    if spec.service.sdp:
        try:
            url = connections.sdp_endpoint(spec.link_name).api_base + "/requests"
        except ConnectionsError:
            url = "https://sdp.example.com/api/v3/requests"
    elif spec.base_url:
        url = spec.base_url.rstrip("/") + "/"
    step = {
        "id": f"call_{spec.link_name}"[:50],
        "uses": "http.get",
        "with": {"connection": spec.link_name, "url": url},
    }
    return dump_yaml({"actions": [step]})


@bp.get("/<link>")
def detail(link: str) -> ResponseReturnValue:
    """One connection: how it authenticates (never a secret), its status, a rule step."""
    connections = facade()
    spec = connections.spec(link)
    row = _row(connections, spec, pages_setup().used_by().get(link, ()))
    status = None
    if row.state != "error":
        status = connections.status(link)
    return render_template(
        "connections/detail.html",
        spec=spec,
        row=row,
        status=status,
        snippet=_rule_step(connections, spec),
        redirect_uri=connections.redirect_uri,
    )
