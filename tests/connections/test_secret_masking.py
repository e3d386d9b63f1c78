"""Answers through a connection come back with its secrets masked (body and headers)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import httpx
import pytest
from flask import Flask, Response, request

from connections.secret_masking import MASK, MaskingTransport, mask_text, secret_forms
from tests.connections.conftest import ConnectionsFactory, FakeProvider
from tests.wsgi_server import serving

SECRET = "s3cr3t/key+with=symbols"


@pytest.fixture
def echo() -> Iterator[str]:
    app = Flask("echo")

    @app.route("/echo", methods=["GET", "POST"])
    def everything() -> Response:
        body = json.dumps(
            {
                "headers": dict(request.headers),
                "query": request.query_string.decode(),
                "body": request.get_data(as_text=True),
            }
        )
        reply = Response(body, content_type="application/json")
        reply.headers["X-Echo-Key"] = request.headers.get("X-Api-Key", "")
        return reply

    @app.get("/gzip")
    def zipped() -> Response:
        reply = Response(gzip.compress(f"key={request.args['k']}".encode()))
        reply.headers["Content-Encoding"] = "gzip"
        return reply

    with serving(app) as base:
        yield base


def test_every_echoed_form_is_masked(echo: str) -> None:
    transport = MaskingTransport([SECRET], ["X-Api-Key", "key"])
    with httpx.Client(transport=transport) as client:
        response = client.post(
            echo + "/echo",
            params={"key": SECRET},
            headers={"X-Api-Key": SECRET, "Authorization": "Bearer fresh-token-123"},
            json={"copy": SECRET},
        )
    assert SECRET not in response.text
    assert "s3cr3t%2Fkey%2Bwith%3Dsymbols" not in response.text  # URL-encoded echo
    assert "fresh-token-123" not in response.text  # what the request itself carried
    assert response.headers["X-Echo-Key"] == MASK
    assert response.json()["headers"]["X-Api-Key"] == MASK


def test_compressed_answers_are_masked_and_still_readable(echo: str) -> None:
    with httpx.Client(transport=MaskingTransport([SECRET])) as client:
        response = client.get(echo + "/gzip", params={"k": SECRET})
    assert response.text == f"key={MASK}"
    assert "content-encoding" not in response.headers


def test_short_values_and_ordinary_text_are_left_alone() -> None:
    forms = secret_forms(["abc", "long-enough-secret"])
    assert mask_text("abc and long-enough-secret", forms) == f"abc and {MASK}"
    assert mask_text('quoted \\"x', secret_forms(['"x'])) == 'quoted \\"x'


def test_a_connection_masks_its_stored_and_declared_secrets(
    make: ConnectionsFactory, provider: FakeProvider
) -> None:
    conns = make(
        "services:\n  tickets:\n    auth: api_key\n"
        f"    base_url: {provider.url}\n"
        "    params: [{name: X-Api-Key, display_name: Key, placement: header}]\n"
        "connections:\n  tickets_main:\n    service: tickets\n"
    )
    conns.connect_static("tickets_main", {"X-Api-Key": "stored-api-key-value"})
    with conns.client("tickets_main") as client:
        echoed = client.get("/apikey/echo").json()
    assert echoed["headers"]["x-api-key"] == MASK
    assert provider.state.apikey_calls[-1]["headers"]["x-api-key"] == "stored-api-key-value"
