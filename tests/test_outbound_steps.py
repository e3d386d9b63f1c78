"""Outbound policy through the real worker: rule steps with URLs rendered from event data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import deployment

pytestmark = pytest.mark.integration

RULE = """\
rules:
  - id: anonymous-call
    on: [request.created]
    actions:
      - id: call
        uses: http.get
        with: {url: "{{ payload.target }}"}
  - id: through-sdp
    on: [request.updated]
    actions:
      - id: call
        uses: http.get
        with: {connection: sdp, url: "{{ payload.target }}"}
"""


def _event(kind: str, event_id: str, target: str) -> dict[str, object]:
    return {
        "event": kind,
        "event_id": event_id,
        "target": target,
        "request": {"id": "77", "subject": "S"},
    }


def test_steps_without_a_connection_stay_outside_and_credentials_stay_home(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    # No loopback allowance: this deployment behaves like production.
    with deployment(
        tmp_path, database_url, redis_url, rules=RULE, extra_env={"DESKWIRE_HTTP_ALLOW": ""}
    ) as d:
        cases = {
            "private": ("https://10.0.0.1/admin", "refusing to call 10.0.0.1: a private address"),
            "metadata": (
                "https://169.254.169.254/latest/meta-data/",
                "refusing to call 169.254.169.254: a link-local address",
            ),
            "loopback": (d.fake_url + "/slow", "refusing to call 127.0.0.1: a loopback address"),
        }
        for name, (target, _message) in cases.items():
            assert d.post(_event("request.created", name, target)).status_code == 202
        for name, (_target, message) in cases.items():
            event = d.wait_for(name)
            assert event.status == "failed"
            assert message in (event.error or ""), event.error
            assert "DESKWIRE_HTTP_ALLOW" in (event.error or "")
        assert d.fake.slow_calls == 0  # the loopback call was never made

        # Through the SDP connection, a URL rendered to another host is refused by name,
        # before the request (and its access token) leaves.
        elsewhere = d.fake_url.replace("127.0.0.1", "localhost") + "/slow"
        assert d.post(_event("request.updated", "stolen", elsewhere)).status_code == 202
        event = d.wait_for("stolen")
        assert event.status == "failed"
        assert "connection 'sdp' sends its credentials only to its own hosts" in (event.error or "")
        assert "refusing a request to localhost" in (event.error or "")
        assert d.fake.slow_calls == 0
        # The connection's own host still works (the same step, its own URL).
        assert d.post(_event("request.updated", "own", d.fake_url + "/slow")).status_code == 202
        assert d.wait_for("own").status == "done"
        assert d.fake.slow_calls == 1
