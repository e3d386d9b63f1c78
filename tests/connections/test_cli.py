"""``deskwire connections …`` through click's CliRunner, against the fake provider."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner, Result

from deskwire.connections_cli import connections_group
from deskwire.devsecrets import dev_secret
from tests.connections.conftest import CLIENT_ID, CLIENT_SECRET, FakeProvider, oauth2_yaml

API_KEY_FILE = """
services:
  tickets:
    auth: api_key
    base_url: {url}
    params:
      - {{name: X-Api-Key, display_name: API key, placement: header}}
connections:
  tickets_main:
    name: Tickets
    service: tickets
"""


@pytest.fixture
def env(tmp_path: Path, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DESKWIRE_DATABASE_URL", database_url)
    monkeypatch.setenv("DESKWIRE_CONNECTIONS_FILE", str(tmp_path / "connections.yml"))
    monkeypatch.setenv("DESKWIRE_RULES_DIR", str(tmp_path / "rules"))
    monkeypatch.setenv("DESKWIRE_BROKER_URL", redis_url)
    monkeypatch.setenv("DESKWIRE_SECRET_KEY", "cli passphrase")
    monkeypatch.setenv("DESKWIRE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DESKWIRE_PUBLIC_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("ACME_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("ACME_CLIENT_SECRET", CLIENT_SECRET)
    return tmp_path


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(connections_group, list(args), input=input, catch_exceptions=False)


def test_api_key_connect_list_show_and_test(env: Path, provider: FakeProvider) -> None:
    (env / "connections.yml").write_text(API_KEY_FILE.format(url=provider.url))
    result = run("list")
    assert result.exit_code == 0
    assert "tickets_main" in result.output
    assert "not_connected" in result.output
    bad = run("connect", "tickets_main", "--value", "novalue")
    assert bad.exit_code == 2
    assert "NAME=VALUE" in bad.output
    prompted = run("connect", "tickets_main", input="secret-key-42\n")
    assert prompted.exit_code == 0, prompted.output
    assert "secret-key-42" not in prompted.output  # hidden input
    assert "connected" in prompted.output
    probe = run("test", "tickets_main", "--url", f"{provider.url}/apikey/echo")
    assert probe.exit_code == 0, probe.output
    assert "HTTP 200 from 127.0.0.1" in probe.output
    assert "secret-key-42" not in probe.output
    shown = run("show", "tickets_main")
    assert "uses: http.get" in shown.output
    assert "connection: tickets_main" in shown.output
    assert f"url: {provider.url}/" in shown.output
    unknown = run("show", "tickets_mian")
    assert unknown.exit_code == 1
    assert "did you mean 'tickets_main'" in unknown.output


def test_oauth_connect_prints_url_then_takes_the_callback(
    env: Path, provider: FakeProvider
) -> None:
    (env / "connections.yml").write_text(oauth2_yaml(provider.url))
    started = run("connect", "acme_crm")
    assert started.exit_code == 0
    url = next(line.strip() for line in started.output.splitlines() if "/oauth/authorize?" in line)
    location = httpx.get(url).headers["Location"]
    bare = run("connect", "acme_crm", "--code", parse_qs(urlsplit(location).query)["code"][0])
    assert bare.exit_code == 2
    assert "--state" in bare.output
    finished = run("connect", "acme_crm", "--code", location)
    assert finished.exit_code == 0, finished.output
    assert "acme_crm: connected" in finished.output
    replay = run("connect", "acme_crm", "--code", location)
    assert replay.exit_code == 1
    assert "replayed" in replay.output
    revoked = run("revoke", "acme_crm")
    assert "revoked at the provider" in revoked.output


def test_revoke_the_provider_does_not_confirm_exits_non_zero(
    env: Path, provider: FakeProvider
) -> None:
    (env / "connections.yml").write_text(oauth2_yaml(provider.url))
    started = run("connect", "acme_crm")
    url = next(line.strip() for line in started.output.splitlines() if "/oauth/authorize?" in line)
    location = httpx.get(url).headers["Location"]
    assert run("connect", "acme_crm", "--code", location).exit_code == 0
    provider.state.revoke_status = 503
    revoked = run("revoke", "acme_crm")
    assert revoked.exit_code == 1
    assert "the provider did not confirm" in revoked.output


def test_commands_that_refresh_need_redis(
    env: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    (env / "connections.yml").write_text(oauth2_yaml(provider.url))
    monkeypatch.delenv("DESKWIRE_BROKER_URL")
    result = run(
        "connect", "acme_crm", "--code", "http://127.0.0.1:8000/connections/callback?code=x&state=y"
    )
    assert result.exit_code == 1
    assert "DESKWIRE_BROKER_URL" in result.output
    assert run("list").exit_code == 0  # listing works without Redis


def test_delete_refused_while_a_rule_uses_it(env: Path, provider: FakeProvider) -> None:
    (env / "connections.yml").write_text(API_KEY_FILE.format(url=provider.url))
    (env / "rules").mkdir()
    (env / "rules" / "tickets.yml").write_text(
        "rules:\n  - id: open-ticket\n    on: [request.created]\n    actions:\n"
        "      - uses: http.post\n        with: {connection: tickets_main, url: /t}\n"
    )
    refused = run("delete", "tickets_main", "--yes")
    assert refused.exit_code == 1
    assert "used by rule open-ticket" in refused.output
    (env / "rules" / "tickets.yml").unlink()
    deleted = run("delete", "tickets_main", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "tickets_main" not in (env / "connections.yml").read_text()


def test_import_manifest(env: Path) -> None:
    manifest = env / "plugin-manifest.json"
    manifest.write_text(
        json.dumps({"connectors": [{"connectionLinkName": "slack_alerts", "serviceName": "slack"}]})
    )
    preview = run("import", str(manifest))
    assert preview.exit_code == 0
    assert "slack_alerts:" in preview.output
    written = run("import", str(manifest), "--write")
    assert written.exit_code == 0, written.output
    assert "added connection slack_alerts" in written.output
    assert "slack_alerts" in (env / "connections.yml").read_text()
    manifest.write_text("{broken")
    broken = run("import", str(manifest))
    assert broken.exit_code == 1
    assert "is not JSON" in broken.output


def test_bad_connections_file_is_reported_with_its_line(env: Path) -> None:
    (env / "connections.yml").write_text(
        "connections:\n  pd:\n    service: nope\n  9pd:\n    service: pagerduty\n"
        "  acme:\n    name: Acme\n    service: slack\n"
    )
    result = run("list")
    assert result.exit_code == 1
    listed = [line.strip() for line in result.output.splitlines() if "connections.yml:" in line]
    assert [line.split(": ", 1)[0].rsplit(":", 2)[1:] for line in listed] == [
        ["3", "14"],  # the unknown service: its value
        ["4", "3"],  # the bad link name: the key
        ["6", "3"],  # the missing client id and secret: the key of their connection
        ["6", "3"],
    ]
    assert "connections.yml:3:14: connections.pd.service: unknown service 'nope'" in result.output


def test_rotate_key_and_dev_key(
    env: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    (env / "connections.yml").write_text(API_KEY_FILE.format(url=provider.url))
    run("connect", "tickets_main", "--value", "X-Api-Key=k1")
    monkeypatch.setenv("DESKWIRE_SECRET_KEY", "new passphrase,cli passphrase")
    rotated = run("rotate-key")
    assert "re-encrypted 1 stored secret" in rotated.output
    monkeypatch.setenv("DESKWIRE_SECRET_KEY", "new passphrase")
    assert "connected" in run("list").output
    monkeypatch.delenv("DESKWIRE_SECRET_KEY")
    # No key and no development key: the CLI makes none (only `serve` does), it says so.
    none = CliRunner().invoke(connections_group, ["list"])
    assert none.exit_code == 1
    assert "DESKWIRE_SECRET_KEY is not set and there is no development key" in none.output
    key_file = env / "var" / "secret.key"
    assert not key_file.exists()
    # The quick start's development key (made by `serve`) is used when the variable is unset.
    dev_secret(env / "var", "secret.key", "DESKWIRE_SECRET_KEY", create=True)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    dev = CliRunner().invoke(connections_group, ["list"])
    assert dev.exit_code == 1  # the stored key was made with another key: said plainly
    assert "cannot be decrypted" in dev.output
