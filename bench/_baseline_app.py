"""The baselines of bench/ingest.py: the least a webhook endpoint can do.

``bare``: token check and one Redis LPUSH. ``naive_celery``: the same token check, then the
payload published as a Celery task with Celery's defaults (what a first Flask + Celery
endpoint looks like: no database, nothing stored before the reply).
"""

from __future__ import annotations

import hmac
import os

import redis
from celery import Celery
from flask import Flask, Response, jsonify, request

_token = os.environ["BENCH_TOKEN"].encode()
_client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
_celery = Celery("baseline", broker=os.environ["BENCH_REDIS_URL"], set_as_current=False)


def _authorised() -> bool:
    return hmac.compare_digest(request.headers.get("X-Deskwire-Token", "").encode(), _token)


bare = Flask("bare")
naive_celery = Flask("naive_celery")


@bare.post("/webhooks/sdp")
def receive_bare() -> tuple[Response, int]:
    if not _authorised():
        return jsonify(error="bad_token"), 401
    _client.lpush("baseline", request.get_data())
    return jsonify(status="queued"), 202


@naive_celery.post("/webhooks/sdp")
def receive_celery() -> tuple[Response, int]:
    if not _authorised():
        return jsonify(error="bad_token"), 401
    payload = request.get_json(silent=True) or {}
    _celery.send_task("baseline.process", args=[payload], queue="baseline")
    return jsonify(status="queued"), 202
