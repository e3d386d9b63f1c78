"""Every request shape becomes one ``request`` mapping; the state of a request is read right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from deskwire.rules_cli import rules_group
from sdp.request_shapes import (
    about_a_request,
    epoch_ms,
    ids_only,
    last_updated_time,
    normalise_request,
    request_in_payload,
)
from worker.request_state import body_digest

# What every shape below must come out as (the fields they all carry).
EXPECTED = {
    "id": "4001",
    "subject": "VPN down",
    "priority": {"name": "High"},
    "status": {"name": "Open"},
    "requester": {"name": "Jane Roe", "email_id": "jane@example.com"},
    "last_updated_time": {"value": "1700000123000"},
}


def _common(request: dict[str, Any]) -> dict[str, Any]:
    return {key: request.get(key) for key in EXPECTED}


CLOUD_V3 = {
    "request": {
        "id": "4001",
        "display_id": "17",
        "subject": "VPN down",
        "priority": {"name": "High", "id": "3"},
        "status": {"name": "Open", "color": "#0066ff"},
        "requester": {"name": "Jane Roe", "email_id": "jane@example.com", "is_vip_user": True},
        "last_updated_time": {"value": "1700000123000", "display_value": "Nov 14, 2023 10:15 PM"},
        "udf_fields": {"udf_char1": "Laptop"},
    }
}
# On-premises v3 sends the same names; ids may come as numbers.
ONPREM_V3 = {
    "request": {
        "id": 4001,
        "subject": "VPN down",
        "priority": {"name": "High"},
        "status": {"name": "Open"},
        "requester": {"name": "Jane Roe", "email_id": "jane@example.com"},
        "last_updated_time": {"value": 1700000123000},
    }
}
DELUGE_REQUEST_OBJ = {
    "event": "request.updated",
    "requestObj": {
        "id": "4001",
        "subject": "VPN down",
        "priority": {"name": "High"},
        "status": {"name": "Open"},
        "requester": {"name": "Jane Roe", "email_id": "jane@example.com"},
        "last_updated_time": {"value": "1700000123000"},
    },
}
# A Deluge map posted as the body itself (invokeurl with requestObj as the parameters).
DELUGE_AS_BODY = {"event": "request.updated", **DELUGE_REQUEST_OBJ["requestObj"]}
ONPREM_UPPER_CASE = {
    "request": {
        "WORKORDERID": "4001",
        "SUBJECT": "VPN down",
        "PRIORITY": "High",
        "STATUS": "Open",
        "REQUESTER": "Jane Roe",
        "REQUESTEREMAIL": "jane@example.com",
        "LASTUPDATEDTIME": "1700000123000",
        "DUEBYTIME": "-1",
    }
}
# A flat body built with SDP's `$` variables (values substituted as text).
FLAT_FROM_VARIABLES = {
    "event": "request.updated",
    "request_id": "4001",
    "subject": "VPN down",
    "priority": "High",
    "status": "Open",
    "requester": "Jane Roe",
    "last_updated_time": "1700000123000",
}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(CLOUD_V3, id="cloud-v3"),
        pytest.param(ONPREM_V3, id="onprem-v3"),
        pytest.param(DELUGE_REQUEST_OBJ, id="deluge-requestObj"),
        pytest.param(DELUGE_AS_BODY, id="deluge-map-as-body"),
        pytest.param(ONPREM_UPPER_CASE, id="onprem-upper-case"),
        pytest.param({"request": '{"id": "4001", "subject": "VPN down"}'}, id="json-text"),
    ],
)
def test_every_shape_becomes_one_request(payload: dict[str, Any]) -> None:
    request = request_in_payload(payload, event_type="request.updated")
    assert request["id"] == "4001"
    assert request["subject"] == "VPN down"
    if "priority" in request:
        common = _common(request)
        common["priority"] = {"name": common["priority"]["name"]}
        common["status"] = {"name": common["status"]["name"]}
        common["requester"] = {
            k: common["requester"][k] for k in ("name", "email_id") if k in common["requester"]
        }
        common["last_updated_time"] = {"value": common["last_updated_time"]["value"]}
        assert common == EXPECTED
        assert last_updated_time(payload, request) == "1700000123000"


def test_upper_case_keys_keep_what_has_no_v3_name_and_drop_unset_times() -> None:
    request = request_in_payload(
        {"request": ONPREM_UPPER_CASE["request"] | {"Asset Tag": "LT-9", "TECHNICIAN": "a@x.io"}},
        event_type="request.updated",
    )
    assert request["Asset Tag"] == "LT-9"
    assert request["technician"] == {"email_id": "a@x.io"}
    assert request["due_by_time"] is None  # the older JSON writes -1 for "not set"


def test_flat_variables_become_v3_shapes() -> None:
    request = request_in_payload(FLAT_FROM_VARIABLES, event_type="request.updated")
    assert request == {
        "id": "4001",
        "subject": "VPN down",
        "priority": {"name": "High"},
        "status": {"name": "Open"},
        "requester": {"name": "Jane Roe"},
        "last_updated_time": {"value": "1700000123000"},
    }
    assert "event" not in request


def test_a_v3_key_wins_over_its_upper_case_twin() -> None:
    assert normalise_request({"SUBJECT": "old", "subject": "new"})["subject"] == "new"
    assert normalise_request({"subject": "new", "SUBJECT": "old"})["subject"] == "new"


def test_the_id_from_ingest_wins() -> None:
    payload = {"request": {"id": "1", "subject": "x"}}
    assert request_in_payload(payload, event_type="request.updated", request_id="2")["id"] == "2"


def test_a_body_about_something_else_has_no_request() -> None:
    change = {"id": "3001", "title": "Firewall change"}
    assert request_in_payload(change, event_type="change.created") == {}
    assert request_in_payload(change | {"request_id": "77"}, event_type="change.created") == {}
    assert request_in_payload(change, event_type="change.created", request_id="77") == {"id": "77"}
    assert request_in_payload({"event": "x", "change": {"id": "8"}}, event_type="request.a") == {}
    assert not about_a_request("change.created", {"change": {"id": "8"}})
    assert about_a_request("request.updated", {})
    assert about_a_request("custom", {"requestObj": {}})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1700000123000, "1700000123000"),
        ("1700000123000", "1700000123000"),
        (" 1700000123000 ", "1700000123000"),
        ({"value": "1700000123000", "display_value": "Nov 14, 2023"}, "1700000123000"),
        ({"value": 1700000123000}, "1700000123000"),
        ("Nov 14, 2023 10:15 PM", None),  # display text: minute resolution is no state
        ("$last_updated_time", None),
        ("-1", None),
        (0, None),
        (True, None),
        (None, None),
        ("١٢٣", None),  # digits, but not ASCII ones
        ("9" * 21, None),
        ({"display_value": "Nov 14, 2023"}, None),
    ],
)
def test_epoch_ms_accepts_only_epoch_milliseconds(value: object, expected: str | None) -> None:
    assert epoch_ms(value) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"request": {"id": "1", "last_updated_time": {"value": "1700000000001"}}},
        {"request": {"id": "1", "last_updated_time": "1700000000001"}},
        {"request": {"id": "1"}, "last_updated_time": "1700000000001"},
        {"request_id": "1", "last_updated_time": 1700000000001},
        {"request": {"WORKORDERID": "1", "LASTUPDATEDTIME": "1700000000001"}},
    ],
)
def test_last_updated_time_is_found_nested_or_flat(payload: dict[str, Any]) -> None:
    assert (
        last_updated_time(payload, request_in_payload(payload, event_type="request.updated"))
        == "1700000000001"
    )


def test_ids_only_means_nothing_for_the_rules() -> None:
    assert ids_only(request_in_payload({"request": {"id": "1"}}, event_type="request.updated"))
    assert ids_only(
        request_in_payload(
            {"request_id": "1", "last_updated_time": "5"}, event_type="request.updated"
        )
    )
    assert ids_only(
        request_in_payload({"request": {"display_id": "17"}}, event_type="request.updated")
    )
    assert not ids_only(
        request_in_payload({"request": {"id": "1", "subject": "x"}}, event_type="request.updated")
    )


def test_body_digest_is_the_same_for_the_same_body_in_any_key_order() -> None:
    one = {"request": {"id": "1", "note": "a"}, "event": "request.updated"}
    same = {"event": "request.updated", "request": {"note": "a", "id": "1"}}
    other = {"event": "request.updated", "request": {"note": "b", "id": "1"}}
    assert body_digest(one) == body_digest(same)
    assert body_digest(one) != body_digest(other)


def test_rules_test_sees_the_request_as_the_worker_does(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "r.yml").write_text(
        "rules:\n  - id: urgent\n    on: [request.updated]\n"
        "    when: {request.priority.name: High}\n"
        "    actions:\n      - uses: log\n        with: {message: hi}\n"
    )
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"event": "request.updated", **ONPREM_UPPER_CASE}))
    result = CliRunner().invoke(rules_group, ["test", str(event), "--dir", str(rules_dir)])
    assert result.exit_code == 0, result.output
    assert "MATCH    urgent" in result.output
