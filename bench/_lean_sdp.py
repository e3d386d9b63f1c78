"""A lean fake SDP Cloud for the drain and latency runs: notes and Zoho tokens, nothing else.

    python bench/_lean_sdp.py --port P --client-id ID --client-secret S --refresh-token R

SDP is a remote service in production: its CPU is not deskwire's. The strict fake of the
tests (``tests.fakes.sdp``, Flask on werkzeug's threaded server) cost about 2.3 ms of CPU
per note on the benchmark's two cores, a tenth of what the run measured, taken from the
worker it was measuring. This one answers on keep-alive connections from one asyncio loop
in its own process, at a fraction of that, and still checks what matters for the run: the
Zoho token grant (client id, secret, refresh token), ``Authorization: Zoho-oauthtoken`` with
a token it issued, the portal in the path, an ``input_data`` form field. ``GET /stats``
answers how many notes and token grants it served, so the run checks every note arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import secrets
from urllib.parse import parse_qs, unquote_plus

NOTE_PATH = re.compile(r"/app/([^/]+)/api/v3/requests/(\d+)/notes")
OK = {"status_code": 2000, "status": "success"}


def _failed(message: dict[str, object]) -> dict[str, object]:
    return {"response_status": {"status_code": 4000, "status": "failed", "messages": [message]}}


class LeanSdp:
    """The state of the fake: issued tokens and counts."""

    def __init__(self, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token = refresh_token
        self.tokens: set[str] = set()
        self.notes = 0

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        if method == "POST" and path == "/oauth/v2/token":
            form = parse_qs(body.decode())
            given = {name: (form.get(name) or [""])[0] for name in
                     ("client_id", "client_secret", "refresh_token", "grant_type")}  # fmt: skip
            scheme, _, encoded = headers.get("authorization", "").partition(" ")
            if scheme.lower() == "basic":  # client_secret_basic
                pair = base64.b64decode(encoded).decode()
                given["client_id"], _, given["client_secret"] = pair.partition(":")
                given["client_id"], given["client_secret"] = (
                    unquote_plus(given["client_id"]),
                    unquote_plus(given["client_secret"]),
                )
            if (given["client_id"], given["client_secret"]) != (self.client_id, self.client_secret):
                return 401, {"error": "invalid_client"}
            if (
                given["grant_type"] != "refresh_token"
                or given["refresh_token"] != self.refresh_token
            ):
                return 400, {"error": "invalid_grant"}
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer",
                         "api_domain": "https://www.zohoapis.com"}  # fmt: skip
        if method == "GET" and path == "/stats":
            return 200, {"notes": self.notes, "tokens": len(self.tokens)}
        found = NOTE_PATH.fullmatch(path)
        if method == "POST" and found:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme != "Zoho-oauthtoken" or token not in self.tokens:
                return 401, _failed({"status_code": 4001, "message": "invalid token"})
            if b"input_data=" not in body:
                return 400, _failed({"status_code": 4012, "field": "input_data"})
            self.notes += 1
            note = {"id": str(self.notes), "request_id": found.group(2)}
            return 201, {"request_note": note, "response_status": OK}
        return 404, _failed({"status_code": 4007, "message": "Invalid URL"})


async def serve_connection(
    state: LeanSdp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = {}
            for line in lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            status, payload = state.answer(method, target.split("?", 1)[0], headers, body)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode()
                + data
            )
            await writer.drain()
    finally:
        writer.close()


async def main(port: int, state: LeanSdp) -> None:
    server = await asyncio.start_server(
        lambda r, w: serve_connection(state, r, w), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--refresh-token", required=True)
    options = parser.parse_args()
    asyncio.run(
        main(options.port, LeanSdp(options.client_id, options.client_secret, options.refresh_token))
    )
