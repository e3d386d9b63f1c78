"""Every request operation of the SDP client against the fake SDP, Cloud and on-premises.

The fake is strict as sdp-api.md describes the real servers (see tests/fakes/sdp.py):
wrapper keys, lookup and user shapes, paging, error codes with fields.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from sdp import OPERATIONS, SdpClient, SdpError, SdpTransientError
from sdp.metainfo import FieldLabels
from tests.fakes.sdp import FakeSdp
from tests.wsgi_server import serving


@dataclass
class Instance:
    fake: FakeSdp
    client: SdpClient


@pytest.fixture(params=["cloud", "onprem"])
def sdp(request: pytest.FixtureRequest) -> Iterator[Instance]:
    """A fake SDP of each kind and a client of it, with its own custom-field label cache."""
    onprem = request.param == "onprem"
    fake = FakeSdp(onprem=onprem)
    fake.requests = {
        "11": {"id": "11", "subject": "VPN down", "status": {"name": "Open"}},
        "12": {"id": "12", "subject": "Printer", "status": {"name": "Open"}},
    }
    with serving(fake.app()) as url:
        if onprem:
            headers = {"authtoken": fake.technician_key}
        else:
            token = secrets.token_hex(8)
            fake.issued.add(token)
            headers = {"Authorization": f"Zoho-oauthtoken {token}"}
        http = httpx.Client(headers=headers, timeout=10)
        with SdpClient(http, url + fake.api_prefix, onprem=onprem, labels=FieldLabels()) as client:
            yield Instance(fake, client)


def test_add_note_with_every_flag_in_one_round_trip(sdp: Instance) -> None:
    note = sdp.client.add_note(
        "11", "<p>Seen</p>", show_to_requester=True, mark_first_response=True,
        add_to_linked_requests=True,
    )  # fmt: skip
    assert note["id"] == "1"
    [call] = sdp.fake.calls  # on-premises sends its own key `note` first: no failing call
    assert call["keys"] == (["note"] if sdp.fake.onprem else ["request_note"])
    sent = sdp.fake.notes[0]
    assert sent["mark_first_response"] is True
    assert sent["add_to_linked_requests"] is True
    assert sent["show_to_requester"] is True
    assert sent["notify_technician"] is False


def test_note_fallback_reports_sdps_first_error(sdp: Instance) -> None:
    # The first wrapper is refused for a reason of its own (a mandatory field); the other
    # wrapper is then refused as unknown: the error must be the first one.
    sdp.fake.fail_next = [(400, 4012, "description")]
    with pytest.raises(SdpError) as caught:
        sdp.client.add_note("11", "x")
    assert len(sdp.fake.calls) == 2
    assert caught.value.http_status == 400
    assert caught.value.codes == {4012}
    assert "field description" in str(caught.value)
    assert "injected failure" in str(caught.value)


def test_update_request_lookups_users_and_custom_fields_by_label(sdp: Instance) -> None:
    updated = sdp.client.update_request(
        "11",
        {"priority": "High", "urgency": 2, "status": {"name": "Open"},
         "technician": "ann@example.com", "requester": "42", "due_by_time": 1764400000000},
        custom={"asset tag": "LAP-7", "udf_long1": 12},
    )  # fmt: skip
    [update] = sdp.fake.updates
    assert update["priority"] == {"name": "High"}
    assert update["urgency"] == {"id": "2"}
    assert update["technician"] == {"email_id": "ann@example.com"}
    assert update["requester"] == {"id": "42"}
    assert update["due_by_time"] == {"value": 1764400000000}
    assert update["udf_fields"] == {"udf_char1": "LAP-7", "udf_long1": 12}
    assert updated["udf_fields"]["udf_char1"] == "LAP-7"
    # The labels are cached: a second update by label reads the metadata no more.
    sdp.client.update_request("12", {}, custom={"Asset Tag": "LAP-8"})
    assert sdp.fake.metainfo_calls == 1


def test_unknown_custom_field_label_names_the_known_ones(sdp: Instance) -> None:
    with pytest.raises(SdpError) as caught:
        sdp.client.update_request("11", {}, custom={"Colour": "red"})
    assert "'Colour'" in str(caught.value)
    assert "asset tag" in str(caught.value)
    assert sdp.fake.updates == []


def test_update_refused_names_the_field(sdp: Instance) -> None:
    with pytest.raises(SdpError) as caught:
        sdp.client.update_request("11", {"group": {"id": "Network"}})
    assert "4001" in str(caught.value)
    assert "field group" in str(caught.value)


@pytest.mark.parametrize(
    ("owner", "sent"),
    [("ann@example.com", {"email_id": "ann@example.com"}), ("17", {"id": "17"}),
     (17, {"id": "17"})],
)  # fmt: skip
def test_worklog_owner_by_email_or_id(sdp: Instance, owner: object, sent: dict) -> None:
    created = sdp.client.add_worklog(
        "11", {"description": "Fixed", "time_spent": {"hours": 1, "minutes": 5}, "owner": owner}
    )
    assert created["owner"] == sent
    assert sdp.fake.calls[-1]["keys"] == ["worklog"]


def test_worklog_owner_name_is_refused_before_any_call(sdp: Instance) -> None:
    with pytest.raises(SdpError) as caught:
        sdp.client.add_worklog("11", {"description": "x", "owner": "Ann Smith"})
    assert "neither an email address nor a numeric user id" in str(caught.value)
    assert sdp.fake.calls == []


def test_add_task_and_resolution(sdp: Instance) -> None:
    task = sdp.client.add_task(
        "11", {"title": "Swap disk", "owner": "ann@example.com", "group": "Hardware"}
    )
    assert task["id"] == "1"
    assert sdp.fake.tasks[0]["group"] == {"name": "Hardware"}
    assert sdp.fake.tasks[0]["owner"] == {"email_id": "ann@example.com"}
    resolution = sdp.client.add_resolution("11", "Swapped", add_to_linked_requests=True)
    assert resolution == {"content": "Swapped", "add_to_linked_requests": True}


def test_task_without_title_names_the_field(sdp: Instance) -> None:
    with pytest.raises(SdpError) as caught:
        sdp.client.add_task("11", {"title": ""})
    assert "field title" in str(caught.value)


def test_close_assign_pickup(sdp: Instance) -> None:
    sdp.client.assign_request("11", group="Network", technician="ann@example.com")
    assert sdp.fake.requests["11"]["group"] == {"name": "Network"}
    assert sdp.fake.requests["11"]["technician"] == {"email_id": "ann@example.com"}
    picked = sdp.client.pickup_request("12")
    assert picked["technician"]["name"] == "API technician"
    closed = sdp.client.close_request(
        "11", closure_code="Success", comments="Done", requester_ack_resolution=True
    )
    assert closed["status"] == {"name": "Closed"}
    assert closed["closure_info"] == {
        "closure_code": {"name": "Success"}, "closure_comments": "Done",
        "requester_ack_resolution": True,
    }  # fmt: skip
    paths = [call["path"] for call in sdp.fake.calls]
    assert paths == ["requests/11/assign", "requests/12/pickup", "requests/11/close"]


def test_get_request_and_unknown_request(sdp: Instance) -> None:
    assert sdp.client.get_request("12")["subject"] == "Printer"
    with pytest.raises(SdpError) as caught:
        sdp.client.get_request("99")
    assert caught.value.codes == {4007}
    assert not isinstance(caught.value, SdpTransientError)


def test_search_follows_pages_up_to_the_limit(sdp: Instance) -> None:
    sdp.fake.requests = {
        str(n): {
            "id": str(n),
            "subject": f"r{n}",
            "status": {"name": "Open" if n % 2 else "Closed"},
        }
        for n in range(1, 501)
    }
    rows, more = sdp.client.search_requests({"status.name": "Open"}, limit=230)
    assert len(rows) == 230
    assert more is True
    assert {row["status"]["name"] for row in rows} == {"Open"}
    infos = [call["data"]["list_info"] for call in sdp.fake.calls]
    assert [(i["row_count"], i["start_index"]) for i in infos] == [(100, 1), (100, 101), (30, 201)]
    rows, more = sdp.client.search_requests(
        [{"field": "subject", "condition": "contains", "value": "r49"}], limit=1000
    )
    assert sorted(row["id"] for row in rows) == ["49", "490", "491", "492", "493", "494",
                                                 "495", "496", "497", "498", "499"]  # fmt: skip
    assert more is False


def test_search_limit_is_bounded(sdp: Instance) -> None:
    sdp.fake.requests = {str(n): {"id": str(n)} for n in range(1, 1201)}
    rows, more = sdp.client.search_requests(None, limit=5000)
    assert len(rows) == 1000  # MAX_ROWS, whatever a rule asks
    assert more is True
    assert len(sdp.fake.calls) == 10


def test_list_notes_and_link_requests(sdp: Instance) -> None:
    for n in range(3):
        sdp.client.add_note("11", f"n{n}")
    notes, more = sdp.client.list_notes("11", limit=2)
    assert [n["description"] for n in notes] == ["n0", "n1"]
    assert more is True
    linked = sdp.client.link_requests("11", ["12"], comments="same outage")
    assert linked["link_requests"][0]["linked_request"] == {"id": "12"}
    assert sdp.fake.links[0]["comments"] == "same outage"
    with pytest.raises(SdpError) as caught:
        sdp.client.link_requests("11", ["404"])
    assert "field linked_request" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [(200, 4001, False), (400, 4003, False), (403, 4002, False), (500, 4004, True),
     (429, 4015, True), (401, 4022, False), (400, 7001, False)],
)  # fmt: skip
def test_error_codes_of_the_table(sdp: Instance, status: int, code: int, transient: bool) -> None:
    sdp.fake.fail_next = [(status, code, "subject")]
    with pytest.raises(SdpError) as caught:
        sdp.client.update_request("11", {"subject": "x"})
    assert isinstance(caught.value, SdpTransientError) is transient
    assert f"{code}: injected failure (field subject)" in str(caught.value)


def test_retry_after_in_both_forms(sdp: Instance) -> None:
    sdp.fake.retry_after = "30"
    sdp.fake.fail_next = [(429, 4015)]
    with pytest.raises(SdpTransientError) as caught:
        sdp.client.get_request("11")
    assert caught.value.retry_after == 30.0
    sdp.fake.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    sdp.fake.fail_next = [(503, 4004)]
    with pytest.raises(SdpTransientError) as caught:
        sdp.client.get_request("11")
    assert caught.value.retry_after is not None
    assert 80 <= caught.value.retry_after <= 90


def test_a_documented_path_that_is_missing_falls_back_to_the_alternate(sdp: Instance) -> None:
    # A build that only knows /_close: the documented /close answers 4007, then /_close.
    sdp.fake.fail_next = [(404, 4007)]
    with pytest.raises(SdpError) as caught:
        sdp.client.close_request("11", comments="x")
    # The fake has no /_close either: SDP's first answer is the one reported.
    assert [c["path"] for c in sdp.fake.calls] == ["requests/11/close", "requests/11/_close"]
    assert "injected failure" in str(caught.value)


def test_operations_table_covers_every_client_call() -> None:
    # find_request_by_display_id is a search_requests call (one row, display_id is …), and
    # search_page one page of it (reconciliation follows the pages itself).
    used = {name for name in dir(SdpClient) if not name.startswith("_")} - {
        "close",
        "find_request_by_display_id",
        "search_page",
    }
    assert used == set(OPERATIONS)
    for operation in OPERATIONS.values():
        assert operation.method in {"GET", "POST", "PUT"}
        assert not operation.path.startswith("/")
