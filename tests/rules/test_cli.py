"""`deskwire rules check|test|verify`, through click's CliRunner."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from deskwire.rules_cli import rules_group
from tests.rules.conftest import DATA

CONNECTIONS = """
connections:
  pagerduty: {name: PagerDuty, service: pagerduty}
  slack: {name: Slack, service: slack, client_id: id, client_secret: secret}
"""


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def folder(tmp_path, monkeypatch):
    target = tmp_path / "rules"
    shutil.copytree(DATA / "rules", target)
    monkeypatch.setenv("DESKWIRE_RULES_DIR", str(target))
    monkeypatch.setenv("DESKWIRE_CONNECTIONS_FILE", str(tmp_path / "none.yml"))
    return target


@pytest.fixture
def connections_file(tmp_path):
    path = tmp_path / "connections.yml"
    path.write_text(CONNECTIONS)
    return path


def test_check_ok_with_connections(runner, folder, connections_file):
    result = runner.invoke(
        rules_group, ["check", str(folder), "--connections", str(connections_file)]
    )
    assert result.exit_code == 0, result.output
    assert "4 rules OK" in result.output


def test_check_reports_unknown_connection(runner, folder, tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("connections:\n  pagerduty: {name: PD, service: pagerduty}\n")
    result = runner.invoke(rules_group, ["check", "--connections", str(path), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    (error,) = data["errors"]
    assert error["rule"] == "resolved-notify"
    assert error["path"] == "rules[1].actions[0].with.connection"
    assert "unknown connection 'slack'" in error["message"]
    assert set(error) == {"file", "line", "column", "rule", "path", "message"}


def test_check_default_dir_and_missing_connections_file(runner, folder):
    result = runner.invoke(rules_group, ["check"])
    assert result.exit_code == 0, result.output
    assert "does not exist: connection names not checked" in result.output
    result = runner.invoke(rules_group, ["check", "--json"])
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["rules"] == 4
    assert data["errors"] == []
    assert len(data["version"]) == 12


def test_check_invalid_rules(runner, folder):
    (folder / "bad.yml").write_text("rules:\n  - id: x\n    on: y\n    whne: 1\n")
    result = runner.invoke(rules_group, ["check", str(folder)])
    assert result.exit_code == 1
    assert "bad.yml:4:5: [rule x] rules[0].whne: unknown rule key 'whne'" in result.output


def test_check_missing_folder(runner, tmp_path, folder):
    result = runner.invoke(rules_group, ["check", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "rules folder does not exist" in result.output


def test_check_broken_connections_file(runner, folder, tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("connections:\n  Bad:\n    service: pagerduty\n  pd:\n    service: nope\n")
    result = runner.invoke(rules_group, ["check", "--connections", str(path)])
    assert result.exit_code == 1
    assert "the connections file has errors: connection names not checked" in result.output
    assert f"{path}:2:3: connections.Bad: link name 'Bad'" in result.output
    assert f"{path}:5:14: connections.pd.service: unknown service 'nope'" in result.output
    result = runner.invoke(rules_group, ["check", "--connections", str(path), "--json"])
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [(e["line"], e["column"], e["path"]) for e in data["errors"]] == [
        (2, 3, "connections.Bad"),
        (5, 14, "connections.pd.service"),
    ]


def test_test_text(runner, folder):
    result = runner.invoke(rules_group, ["test", str(folder / "events/vip.json")])
    assert result.exit_code == 0, result.output
    assert "MATCH    vip-outage-page" in result.output
    assert "<known at run time: steps.page.json.dedup_key>" in result.output


def test_test_json_and_rule(runner, folder, tmp_path):
    event = tmp_path / "e.json"
    event.write_text(
        json.dumps(
            {"event": "request.created", "request": {"id": "1", "priority": {"name": "Low"}}}
        )
    )
    result = runner.invoke(
        rules_group,
        ["test", str(event), "--rule", "vip-outage-page", "--json", "--dir", str(folder)],
    )
    assert result.exit_code == 0, result.output
    (rule,) = json.loads(result.output)["rules"]
    assert rule["matched"] is False
    assert rule["reason"] == "when.all[0]: request.priority.name equals 'High' — actual: 'Low'"


def test_test_bad_inputs(runner, folder, tmp_path):
    result = runner.invoke(rules_group, ["test", str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = runner.invoke(rules_group, ["test", str(bad)])
    assert result.exit_code == 1
    assert "is not valid JSON" in result.output
    bad.write_text("[1, 2]")
    result = runner.invoke(rules_group, ["test", str(bad)])
    assert result.exit_code == 1
    assert "must hold a JSON object" in result.output
    result = runner.invoke(
        rules_group, ["test", str(folder / "events/vip.json"), "--rule", "vip-outage-pag"]
    )
    assert result.exit_code == 2
    assert "unknown rule id 'vip-outage-pag'; did you mean 'vip-outage-page'?" in result.output


def test_test_with_invalid_rules(runner, folder):
    (folder / "bad.yml").write_text("rules: 5\n")
    result = runner.invoke(rules_group, ["test", str(folder / "events/vip.json"), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["errors"][0]["path"] == "rules"


def test_verify(runner, folder):
    result = runner.invoke(rules_group, ["verify"])
    assert result.exit_code == 0, result.output
    assert "4/4 cases passed" in result.output


def test_verify_failure_and_json(runner, folder):
    case = folder / "extra.case.yml"
    case.write_text(
        "cases:\n  - name: broken\n    event: {event: request.created}\n"
        "    expect: {matched: [vip-outage-page]}\n"
    )
    result = runner.invoke(rules_group, ["verify", str(folder)])
    assert result.exit_code == 1
    assert "FAIL broken" in result.output
    result = runner.invoke(rules_group, ["verify", "--json", "--cases", str(case)])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert data["cases"][0]["name"] == "broken"


def test_verify_without_cases(runner, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(rules_group, ["verify", str(empty)])
    assert result.exit_code == 1  # nothing was verified
    assert "no *.case.yml files found" in result.output
