"""Importing a Zoho extension manifest (seed 004: zohoAuthorisation and connectors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connections import load_config, parse_config
from connections.manifest import ManifestError, import_manifest, merge_into_file

# Built after seed 004's snippets, plus an SDP connection and a user-defined service.
SAMPLE = {
    "service": "DESK",
    "zohoAuthorisation": {
        "type": "connectors",
        "connectionLinkName": "zoho_sign_for_zoho_desk",
        "connectionName": "Zoho Sign for Zoho Desk",
        "serviceName": "zlabs_integration",
        "userAccess": True,
        "isUserDefinedService": False,
        "sharedBy": "4241905",
        "scope": ["Desk.tickets.ALL"],
    },
    "connectors": [
        {
            "connectionLinkName": "dropbox_for_zoho_desk",
            "connectionName": "Dropbox for Zoho Desk",
            "serviceName": "dropbox",
            "userAccess": True,
            "isUserDefinedService": False,
            "sharedBy": "4241905",
        },
        {
            "connectionLinkName": "slack_alerts",
            "connectionName": "Slack alerts",
            "serviceName": "slack",
            "userAccess": False,
            "isUserDefinedService": False,
            "scope": ["chat:write", "channels:read"],
        },
        {
            "connectionLinkName": "acme_crm",
            "connectionName": "Acme CRM",
            "serviceName": "acme_crm_service",
            "userAccess": False,
            "isUserDefinedService": True,
            "scope": ["contacts.read"],
        },
    ],
}


def test_import_sample_manifest(tmp_path: Path) -> None:
    path = tmp_path / "plugin-manifest.json"
    path.write_text(json.dumps(SAMPLE))
    imported = import_manifest(path)
    assert set(imported.connections) == {
        "zoho_sign_for_zoho_desk",
        "dropbox_for_zoho_desk",
        "slack_alerts",
        "acme_crm",
    }
    zoho = imported.connections["zoho_sign_for_zoho_desk"]
    assert zoho["service"] == "zoho"
    assert zoho["per_user"] is True
    assert zoho["scopes"] == ["Desk.tickets.ALL"]
    assert imported.connections["slack_alerts"]["service"] == "slack"
    assert "per_user" not in imported.connections["slack_alerts"]
    assert set(imported.services) == {"dropbox", "acme_crm_service"}
    assert any("DROPBOX_TOKEN_URL" in note for note in imported.notes)
    # The fragment is a valid connections file: unknown services are "not configured".
    config = parse_config(imported.to_yaml(), {})
    assert config.connections["dropbox_for_zoho_desk"].problem is not None
    assert "DROPBOX_AUTHORIZE_URL" in (config.connections["dropbox_for_zoho_desk"].problem or "")


def test_merge_keeps_existing_entries_and_comments(tmp_path: Path) -> None:
    target = tmp_path / "connections.yml"
    target.write_text(
        "# ops notes stay\nconnections:\n  slack_alerts:\n    name: Ours\n    service: slack\n"
        "    client_id: a\n    client_secret: b\n"
    )
    imported = import_manifest(SAMPLE)
    preview = merge_into_file(imported, target, write=False)
    assert "slack_alerts" not in target.read_text().split("Ours")[1]  # nothing written yet
    assert preview.skipped == ["connections.slack_alerts"]
    report = merge_into_file(imported, target, write=True)
    text = target.read_text()
    assert text.startswith("# ops notes stay")
    assert "name: Ours" in text
    assert "imported from plugin-manifest.json" in text
    assert set(report.added_connections) == {
        "zoho_sign_for_zoho_desk",
        "dropbox_for_zoho_desk",
        "acme_crm",
    }
    config = load_config(target, {})
    assert set(config.connections) >= {"slack_alerts", "acme_crm"}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"connectors": [{"connectionLinkName": "Bad Name"}]}, "not a valid link name"),
        ({"connectors": "nope"}, "connectors must be a list"),
        ({"connectors": [{"connectionLinkName": "a", "scope": 5}]}, "scope must be a list"),
        (
            {"connectors": [{"connectionLinkName": "a"}, {"connectionLinkName": "a"}]},
            "appears twice",
        ),
        ("{not json", "is not JSON"),
    ],
)
def test_bad_manifests(manifest: object, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        import_manifest(manifest if isinstance(manifest, str) else dict(manifest))  # type: ignore[arg-type]


def test_imported_sdp_connection(tmp_path: Path) -> None:
    imported = import_manifest(
        {
            "zohoAuthorisation": {
                "connectionLinkName": "sdp_cloud",
                "connectionName": "SDP",
                "serviceName": "zlabs_integration",
                "scope": ["SDPOnDemand.requests.ALL"],
            }
        }
    )
    entry = imported.connections["sdp_cloud"]
    assert entry["service"] == "sdp"
    assert entry["client_id"] == "${SDP_CLOUD_CLIENT_ID}"
    config = parse_config(imported.to_yaml(), {})
    assert config.connections["sdp_cloud"].problem == (
        "SDP_CLOUD_CLIENT_ID, SDP_CLOUD_CLIENT_SECRET are not set"
    )
