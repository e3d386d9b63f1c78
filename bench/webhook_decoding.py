"""Cost of reading a webhook body (decode, limits, checks) against a bare ``json.loads``.

    .venv/bin/python bench/webhook_decoding.py [--repeat 200]

Typical SDP bodies of each shape, and the worst a hostile sender can do inside the 1 MiB
limit (deep nesting, many fields, long strings), through ``parse_webhook`` in-process.
Machines are noisy: read the ratios and the hostile rows' absolute bound, not the digits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webhooks.errors import WebhookError  # noqa: E402
from webhooks.parsing import parse_webhook  # noqa: E402

REQUEST = {
    "id": "100000000000001",
    "subject": "VPN is down in the Berlin office",
    "priority": {"name": "High"},
    "status": {"name": "Open"},
    "requester": {"name": "Ada Lovelace", "email_id": "ada@example.com"},
    "description": "<p>Since 9:00 nobody can connect.</p>" * 20,
}
MIB = 1024 * 1024
FORM = "application/x-www-form-urlencoded"


def form(fields: dict[str, str]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in fields.items()).encode()


CASES: list[tuple[str, bytes, str]] = [
    ("nested JSON", json.dumps({"request": REQUEST}).encode(), "application/json"),
    ("flat JSON, sniffed", json.dumps({"id": "1", "subject": "VPN"}).encode(), ""),
    ("bracketed form", form({f"request[{k}]": str(v) for k, v in REQUEST.items()}), FORM),
    ("form field holding JSON", form({"request": json.dumps(REQUEST)}), FORM),
    ("hostile: 1 MiB of '['", b'{"id": 1, "x": ' + b"[" * (MIB - 20) + b"}", "application/json"),
    ("hostile: 1 MiB of {\"a\":", b"{" + b'"a":{' * (MIB // 5 - 1) + b"}", "application/json"),
    ("hostile: 1 MiB string of brackets",
     json.dumps({"id": 1, "s": "[{" * (MIB // 2 - 20)}).encode(), "application/json"),
    ("hostile: 2000 form fields",
     b"id=1&" + b"&".join(b"f%d=%d" % (n, n) for n in range(1990)), FORM),
    ("hostile: 1 MiB one form value", b"id=1&s=" + b"x" * (MIB - 10), FORM),
]  # fmt: skip


def timed(function: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    repeat = parser.parse_args().repeat
    print(f"{'body':36} {'bytes':>9} {'parse_webhook':>14} {'json.loads':>11} {'answer':>8}")
    for name, raw, content_type in CASES:

        def run(raw: bytes = raw, content_type: str = content_type) -> str:
            try:
                parse_webhook(
                    raw, content_type, source="sdp", query={}, headers={},
                    path_event="request.updated",
                )  # fmt: skip
            except WebhookError as exc:
                return str(exc.status)
            return "202"

        answer = run()
        ours = timed(run, max(1, repeat // (1 + len(raw) // 65536)))
        try:
            bare = f"{timed(lambda raw=raw: json.loads(raw), 5) * 1e3:9.2f}ms"
        except (ValueError, RecursionError) as exc:
            bare = type(exc).__name__[:11]
        print(f"{name:36} {len(raw):9} {ours * 1e3:12.2f}ms {bare:>11} {answer:>8}")


if __name__ == "__main__":
    main()
