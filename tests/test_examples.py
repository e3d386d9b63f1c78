"""The examples the quick start copies stay valid: rules check, regression cases, webhook."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deskwire.cli import cli
from tests.integration import ROOT

EXAMPLES = ROOT / "examples"


def test_example_rules_check_against_the_example_connections(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DESKWIRE_CONNECTIONS_FILE", str(EXAMPLES / "connections.yml"))
    result = CliRunner().invoke(cli, ["rules", "check", str(EXAMPLES / "rules")])
    assert result.exit_code == 0, result.output
    assert "2 rules OK" in result.output


def test_example_regression_cases_pass() -> None:
    result = CliRunner().invoke(cli, ["rules", "verify", str(EXAMPLES / "rules")])
    assert result.exit_code == 0, result.output
    assert "2/2 cases passed" in result.output


def test_sample_webhook_matches_the_example_rules(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DESKWIRE_CONNECTIONS_FILE", str(EXAMPLES / "connections.yml"))
    body = json.loads((EXAMPLES / "webhook.json").read_text())
    assert body["event"] == "request.created"
    result = CliRunner().invoke(
        cli,
        ["rules", "test", str(EXAMPLES / "webhook.json"), "--dir", str(EXAMPLES / "rules")],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("MATCH") == 2
