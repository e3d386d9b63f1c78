"""The baseline of bench/ingest.py: the least a webhook endpoint can do (token check, one LPUSH)."""

from __future__ import annotations

import hmac
import os

import redis
from flask import Flask, Response, jsonify, request

app = Flask("baseline")
_client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
_token = os.environ["BENCH_TOKEN"].encode()


@app.post("/webhooks/sdp")
def receive() -> tuple[Response, int]:
    if not hmac.compare_digest(request.headers.get("X-Deskwire-Token", "").encode(), _token):
        return jsonify(error="bad_token"), 401
    _client.lpush("baseline", request.get_data())
    return jsonify(status="queued"), 202
