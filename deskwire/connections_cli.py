"""``deskwire connections …``: list, show, connect, revoke, delete, test, import, rotate-key.

The facade and the rules come from the composition root (:mod:`deskwire.compose`); this
module is presentation, and maps their errors to one-line CLI errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import click
import httpx

import connections.store  # noqa: F401 - registers the connection tables
from connections import (
    Connections,
    ConnectionsConfigError,
    ConnectionsError,
    ConnectionSpec,
    ConnectKind,
)
from connections.manifest import ManifestError, import_manifest, merge_into_file
from connections.yamlfile import dump_yaml, remove_connection
from deskwire.compose import (
    CompositionError,
    connection_users,
    connections_config,
    connections_facade,
    redis_client,
    rule_source,
    secret_keys,
    with_recorded_broker,
)
from deskwire.database import session_factory
from deskwire.settings import Settings, SettingsError, load_settings
from deskwire.state import open_database

__all__ = ["build_connections", "connections_group"]

NO_BROKER = (
    "refreshing tokens takes a lock in Redis, so that one process refreshes at a time; "
    "set DESKWIRE_BROKER_URL (e.g. redis://127.0.0.1:6379/0), the same Redis the worker uses"
)

connections_group = click.Group(
    "connections", help="Manage connections: list, connect, test, revoke, delete, import."
)


def _settings() -> Settings:
    try:
        return with_recorded_broker(load_settings())
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def build_connections(settings: Settings, *, need_redis: bool = False) -> Connections:
    """A Connections from settings, on an existing database at the current schema."""
    if need_redis and not settings.broker_url:
        raise click.ClickException(NO_BROKER)
    # Redis clients connect lazily; commands that refresh tokens say why Redis is needed.
    client = redis_client(settings.broker_url or None, timeout=settings.http_timeout)
    with _errors():
        config = connections_config(settings.connections_file)
    engine = open_database(settings)  # says which database, before anything else can fail
    with _errors():
        keys = secret_keys(settings)
    return connections_facade(settings, session_factory(engine), client, config=config, keys=keys)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into one-line CLI errors (their messages carry no secrets)."""
    try:
        yield
    except (ConnectionsError, CompositionError) as exc:
        raise click.ClickException(str(exc)) from None


def _spec(conns: Connections, link: str) -> ConnectionSpec:
    with _errors():
        return conns.spec(link)


@connections_group.command("list")
@click.option("--user", help="Show this user's state of per-user connections.")
def list_command(user: str | None) -> None:
    """Every connection with its state."""
    settings = _settings()
    conns = build_connections(settings)
    if not conns.config.exists:
        click.echo(f"no connections file at {settings.connections_file}")
        return
    with _errors():
        statuses = conns.list(user=user)
    if not statuses:
        click.echo(f"{settings.connections_file} declares no connections")
        return
    width = max(len(s.link_name) for s in statuses)
    for status in statuses:
        click.echo(
            f"{status.link_name:<{width}}  {status.service:<16} {status.auth:<8} "
            f"{status.state.value:<16} {status.message}"
        )


def _probe_url(conns: Connections, spec: ConnectionSpec) -> str | None:
    if spec.service.sdp:
        with _errors():
            endpoint = conns.sdp_endpoint(spec.link_name)
        return endpoint.api_base + "/requests"
    return spec.base_url


@connections_group.command("show")
@click.argument("link")
@click.option("--user", help="For per-user connections: this user's state.")
def show_command(link: str, user: str | None) -> None:
    """A connection's details, state, and a rule step that uses it."""
    conns = build_connections(_settings())
    spec = _spec(conns, link)
    with _errors():
        status = conns.status(link, user=user)
    lines = [
        f"link name:  {spec.link_name}",
        f"name:       {spec.name}",
        f"service:    {spec.service.key} ({spec.service.name})",
        f"auth:       {spec.auth}" + (f" / {spec.token_grant}" if spec.token_grant else ""),
    ]
    if spec.token_scopes:
        lines.append(f"scopes:     {', '.join(spec.token_scopes)}")
    if spec.per_user:
        lines.append("per user:   yes (each user connects with their own account)")
    if spec.base_url:
        lines.append(f"base URL:   {spec.base_url}")
    lines.append(f"state:      {status.state.value} — {status.message}")
    click.echo("\n".join(lines))
    url = _probe_url(conns, spec) or "https://api.example.com/path"
    if not spec.service.sdp:
        url = url.rstrip("/") + "/"
    step: dict[str, Any] = {
        "id": f"call_{link}"[:50],
        "uses": "http.get",
        "with": {"connection": link, "url": url},
    }
    click.echo("\nA rule step that uses it:\n")
    click.echo("actions:\n" + _indent(dump_yaml({"x": [step]}).split("\n", 1)[1], 0))


def _indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line else line for line in text.splitlines())


def _parse_values(raw: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{item.split('=')[0]!r}: write NAME=VALUE", param_hint="--value"
            )
        values[name] = value
    return values


@connections_group.command("connect")
@click.argument("link")
@click.option(
    "--code",
    help="OAuth: the URL the browser was sent back to (or just its code, with --state).",
)
@click.option("--state", help="OAuth: the state printed with the authorize URL.")
@click.option(
    "--refresh-token",
    "refresh_token",
    is_flag=True,
    help="OAuth 2.0: paste a refresh token (e.g. a Zoho Self Client's), asked with hidden input.",
)
@click.option(
    "--value",
    "values",
    multiple=True,
    metavar="NAME=VALUE",
    help="API key / Basic: a credential (repeat); missing ones are asked with hidden input.",
)
@click.option("--user", help="For per-user connections: who connects.")
def connect_command(
    link: str,
    code: str | None,
    state: str | None,
    refresh_token: bool,
    values: tuple[str, ...],
    user: str | None,
) -> None:
    """Connect: print the URL to open (OAuth), finish with --code, or store API key/Basic values."""
    settings = _settings()
    conns = build_connections(settings, need_redis=bool(code) or refresh_token)
    spec = _spec(conns, link)
    with _errors():
        if spec.connect_kind is ConnectKind.FORM:
            given = _parse_values(values)
            for field in spec.credential_fields:
                if field.name not in given:
                    given[field.name] = click.prompt(field.label, hide_input=field.secret)
            status = conns.connect_static(link, given, user=user)
        elif refresh_token:
            token = click.prompt("Refresh token", hide_input=True)
            status = conns.bootstrap_refresh_token(link, token.strip(), user=user)
        elif spec.connect_kind is ConnectKind.CLIENT_CREDENTIALS:
            if not settings.broker_url:
                raise click.ClickException(NO_BROKER)
            status = conns.refresh(link, user=user)
        elif code:
            query = _callback_query(code, state)
            conns.complete_callback(query)
            status = conns.status(link, user=user)
        else:
            url = conns.authorize_url(link, user=user)
            click.echo(
                "Open this URL, sign in and allow access:\n\n  "
                + url
                + "\n\nThe provider then sends the browser to "
                + conns.redirect_uri
                + ". That page only finishes connects started from the /connections pages, "
                "so copy the whole address from the browser and run:\n\n  "
                f"deskwire connections connect {link} --code '<that address>'"
            )
            return
    click.echo(f"{link}: {status.state.value} — {status.message}")
    if not status.connected:
        raise SystemExit(1)


def _callback_query(code: str, state: str | None) -> dict[str, str]:
    if "?" in code or code.startswith(("http://", "https://")):
        query = dict(parse_qsl(urlsplit(code).query, keep_blank_values=True))
        if not query:
            raise click.BadParameter("the URL has no query string", param_hint="--code")
        return query
    if not state:
        raise click.BadParameter(
            "a bare code needs --state too; or paste the whole address the browser was sent to",
            param_hint="--code",
        )
    return {"code": code, "state": state}


@connections_group.command("revoke")
@click.argument("link")
@click.option("--user", help="Per-user connections: only this user's tokens (default: all).")
def revoke_command(link: str, user: str | None) -> None:
    """Revoke at the provider (where possible) and forget the tokens."""
    conns = build_connections(_settings())
    with _errors():
        outcome = conns.revoke(link, user=user)
    if outcome.provider_revoked is False:
        # Forgotten here, but the grant may still be live at the provider.
        raise click.ClickException(f"{link}: {outcome.message}")
    click.echo(f"{link}: {outcome.message}")


@connections_group.command("delete")
@click.argument("link")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--keep-declaration",
    is_flag=True,
    help="Forget the tokens but leave the entry in the connections file.",
)
def delete_command(link: str, yes: bool, keep_declaration: bool) -> None:
    """Delete a connection (refused while a rule uses it)."""
    settings = _settings()
    conns = build_connections(settings)
    _spec(conns, link)
    with _errors():
        used_by = connection_users(rule_source(settings))
    if not yes:
        click.confirm(f"Delete connection '{link}' and forget its tokens?", abort=True)
    with _errors():
        outcome = conns.delete(link, used_by)
    click.echo(f"{link}: deleted ({outcome.message})")
    if not keep_declaration and remove_connection(settings.connections_file, link):
        click.echo(f"removed '{link}' from {settings.connections_file}")


@connections_group.command("test")
@click.argument("link")
@click.option("--url", help="URL to GET (default: the service's base URL; SDP: requests).")
@click.option("--user", help="For per-user connections: whose credentials.")
def test_command(link: str, url: str | None, user: str | None) -> None:
    """Make one authenticated call and report its status and time (no body, no secrets)."""
    settings = _settings()
    conns = build_connections(settings, need_redis=True)
    spec = _spec(conns, link)
    target = url or _probe_url(conns, spec)
    if not target:
        raise click.UsageError(f"service {spec.service.key} has no base URL; give --url")
    params: dict[str, str] = {}
    if spec.service.sdp and not url:
        params["input_data"] = json.dumps({"list_info": {"row_count": 1}})
    started = time.monotonic()
    with _errors():
        try:
            with conns.client(link, user=user) as client:
                response = client.get(target, params=params)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"{link}: request failed: {type(exc).__name__}") from None
    elapsed = (time.monotonic() - started) * 1000
    host = httpx.URL(target).host if "://" in target else target
    click.echo(f"{link}: HTTP {response.status_code} from {host} in {elapsed:.0f} ms")
    if response.status_code >= 400:
        raise SystemExit(1)


@connections_group.command("import")
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--write", is_flag=True, help="Merge into the connections file (existing keys win).")
def import_command(manifest: Path, write: bool) -> None:
    """Import connections from a Zoho extension plugin-manifest.json."""
    try:
        imported = import_manifest(manifest)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    for note in imported.notes:
        click.echo(f"note: {note}", err=True)
    if not write:
        click.echo(imported.to_yaml(), nl=False)
        return
    settings = _settings()
    report = merge_into_file(imported, settings.connections_file, write=True)
    for key in report.added_services:
        click.echo(f"added service {key}")
    for key in report.added_connections:
        click.echo(f"added connection {key}")
    for key in report.skipped:
        click.echo(f"kept existing {key}")
    try:
        connections_config(settings.connections_file)
    except ConnectionsConfigError as exc:
        raise click.ClickException(f"the merged file does not load:\n{exc}") from None


@connections_group.command("rotate-key")
def rotate_key_command() -> None:
    """Re-encrypt every stored token with the first key of DESKWIRE_SECRET_KEY."""
    settings = _settings()
    if len(settings.secret_key) < 2:
        click.echo(
            "note: DESKWIRE_SECRET_KEY has one key; to rotate, put the new key first and keep "
            "the old one after it (comma separated), run this, then drop the old key.",
            err=True,
        )
    conns = build_connections(settings)
    with _errors():
        count = conns.rotate_keys()
    click.echo(f"re-encrypted {count} stored secret{'s' if count != 1 else ''} with the newest key")
