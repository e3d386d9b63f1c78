"""docker-compose.yml stays valid and runs the same commands and settings as the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from deskwire.cli import cli
from deskwire.settings import Settings
from tests.integration import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {
    "POSTGRES_PASSWORD": "pw",
    "DESKWIRE_SECRET_KEY": "k",
    "DESKWIRE_WEBHOOK_TOKENS": "t",
    "DESKWIRE_ADMIN_PASSWORD": "a",
    "DESKWIRE_FLOWER_BASIC_AUTH": "ops:f",
}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "docker-compose is not installed (apt-get install docker-compose; .ci/run does)"
        )
    return subprocess.run(
        [binary, "-f", str(COMPOSE), "config"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_config_is_valid() -> None:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    services = YAML(typ="safe").load(result.stdout)["services"]
    assert set(services) == {"redis", "postgres", "migrate", "web", "worker", "flower"}


def test_docker_compose_refuses_to_start_without_secrets() -> None:
    result = compose_config({})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "DESKWIRE_SECRET_KEY" in result.stderr


def _compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def test_every_compose_command_is_a_valid_deskwire_command_line() -> None:
    services = _compose()["services"]
    for name in ("migrate", "web", "worker", "flower"):
        command = services[name]["command"]
        assert command[0] == "deskwire"
        # Parse (without running) exactly as the CLI would: unknown options fail here.
        context = cli.make_context("deskwire", list(command[1:]), resilient_parsing=False)
        sub = cli.get_command(context, command[1])
        assert sub is not None, command
        sub.make_context(command[1], list(command[2:]))


def test_every_compose_setting_is_a_real_setting() -> None:
    compose = _compose()
    environment = compose["x-deskwire"]["environment"]
    known = {f"DESKWIRE_{name.upper()}" for name in Settings.model_fields}
    for variable in environment:
        if variable.startswith("DESKWIRE_"):
            assert variable in known, f"{variable} is not a deskwire setting"


def test_web_worker_and_flower_start_after_the_schema_upgrade() -> None:
    services = _compose()["services"]
    for name in ("web", "worker", "flower"):
        after = services[name]["depends_on"]["migrate"]
        assert after == {"condition": "service_completed_successfully"}


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("deskwire", "webhooks", "worker", "rules", "connections", "sdp", "configfiles"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert Path(ROOT / "constraints.txt").exists()


def test_compose_flower_has_a_sign_in() -> None:
    flower = _compose()["services"]["flower"]
    auth = flower["environment"]["DESKWIRE_FLOWER_BASIC_AUTH"]
    assert auth.startswith("${DESKWIRE_FLOWER_BASIC_AUTH:?"), auth  # required, no default
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    without = compose_config({k: v for k, v in SECRETS.items() if "FLOWER" not in k})
    assert without.returncode != 0
    assert "DESKWIRE_FLOWER_BASIC_AUTH" in without.stderr


def test_every_long_running_compose_service_is_restarted_when_it_exits() -> None:
    services = _compose()["services"]
    for name in ("redis", "postgres", "web", "worker", "flower"):
        assert services[name].get("restart") in ("unless-stopped", "always"), name


def test_test_sh_says_why_tests_were_skipped_and_the_readme_what_they_need() -> None:
    assert 'pytest -rs "$@"' in (ROOT / "test.sh").read_text()
    readme = (ROOT / "README.md").read_text()
    for reason in (
        "DESKWIRE_TEST_DATABASE_URL is not set",
        "no chromium binary",
        "docker-compose is not installed",
    ):
        assert f"`{reason}`" in readme, reason
