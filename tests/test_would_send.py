"""What a shadow step records of a request: no credentials, the connection's secrets masked."""

from __future__ import annotations

import json

import httpx

from worker.would_send import PLACEHOLDER_BASE, Address, RecordingTransport, WouldSend

SECRET = "s3cr3t-api-key"


def _record(address: Address, request: httpx.Request) -> WouldSend:
    sends: list[WouldSend] = []
    response = RecordingTransport(address, sends).handle_request(request)
    assert response.status_code == 200  # answered locally
    [sent] = sends
    return sent


def test_credentials_are_left_out_and_secrets_masked() -> None:
    address = Address(
        "crm", "https://crm.example.com", secrets=frozenset({SECRET}), secret_params=("apikey",)
    )
    request = httpx.Request(
        "POST",
        f"https://crm.example.com/tickets?apikey={SECRET}&q=1",
        headers={
            "Authorization": f"Bearer {SECRET}",
            "apikey": SECRET,
            "Cookie": "session=abc",
            "X-Trace": f"echo {SECRET}",
        },
        json={"summary": "Printer", "copied": SECRET},
    )
    sent = _record(address, request)
    assert (sent.method, sent.url) == ("POST", "https://crm.example.com/tickets?q=1")
    assert sent.headers == {"x-trace": "echo ***", "content-type": "application/json"}
    assert sent.body == {"summary": "Printer", "copied": "***"}
    assert SECRET not in json.dumps(sent.to_dict())


def test_credential_looking_keys_are_redacted() -> None:
    request = httpx.Request(
        "POST",
        "https://hooks.example.com/in",
        headers={"X-Api-Key": "typed-into-the-rule"},
        json={"user": "ann", "password": "hunter22"},
    )
    sent = _record(Address(None), request)
    assert sent.headers["x-api-key"] == "[redacted]"
    assert sent.body == {"user": "ann", "password": "[redacted]"}


def test_an_sdp_form_body_is_shown_as_data() -> None:
    input_data = {"request_note": {"description": "Seen", "show_to_requester": False}}
    request = httpx.Request(
        "POST",
        "https://sdp.example.com/api/v3/requests/7/notes",
        data={"input_data": json.dumps(input_data)},
    )
    sent = _record(Address("sdp", "https://sdp.example.com/api/v3"), request)
    assert sent.body == {"input_data": input_data}
    assert "content-type" in sent.headers


def test_an_unknown_host_is_shown_as_what_is_missing() -> None:
    address = Address("sdp", PLACEHOLDER_BASE, missing="<no sdp connection configured>")
    sent = _record(address, httpx.Request("GET", f"{PLACEHOLDER_BASE}/api/v3/requests/7"))
    assert sent.url == "https://<no sdp connection configured>/api/v3/requests/7"
    assert sent.body is None


def test_text_bodies_stay_text() -> None:
    request = httpx.Request("PUT", "https://x.example.com/a", content=b"plain words")
    assert _record(Address(None), request).body == "plain words"
