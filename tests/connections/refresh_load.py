"""Token refreshes under load, over several lifetimes, in accelerated time.

Run by ``test_refresh_lifetimes.py`` as ``python -m tests.connections.refresh_load`` under
libfaketime (``FAKETIME="+0 x<speed>"``, ``FAKETIME_DONT_RESET=1``): this process and the
processes it starts share one clock that runs ``speed`` times faster than the wall clock, so
a 3,600 s token lives 8 s. Nothing of deskwire is mocked: the clock is the system's, as
every process sees it.

``run`` (the conductor): serves a fake OAuth 2.0 provider and API on loopback (tokens of
``--lifetime`` seconds; the API refuses unknown, expired and revoked tokens), writes the
connections file, connects the connection once from a refresh token, starts ``--workers``
processes, forces one 401 during the second lifetime (the provider revokes the token in
use), and prints a JSON report: every token call, every refusal, the workers' tallies.

``worker``: builds its runtime exactly as a deskwire worker process does
(:func:`deskwire.compose.build_runtime`) and calls the API through the connection's
client from ``--threads`` threads until the given (faked) time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from deskwire.compose import build_runtime, live_connections
from deskwire.database import make_engine, session_factory
from deskwire.schema import upgrade
from deskwire.settings import load_settings

LINK = "acme"
CLIENT_ID = "load-client"
CLIENT_SECRET = "load-client-secret"
# Between two calls of one thread: a tenth of a real second, whatever the speed.
PAUSE_REAL = 0.1

CONNECTIONS = """\
services:
  acme_api:
    name: Acme API
    auth: oauth2
    grant_type: authorization_code
    authorize_url: {url}/authorize
    token_url: {url}/token
    client_id: ${{LOAD_CLIENT_ID}}
    client_secret: ${{LOAD_CLIENT_SECRET}}
connections:
  acme:
    name: Acme
    service: acme_api
"""


@dataclass
class Provider:
    """The fake provider's books (times are this process's clock: the shared fake one)."""

    lifetime: float
    refresh_tokens: set[str] = field(default_factory=set)
    issued: dict[str, float] = field(default_factory=dict)  # access token -> issued at
    revoked: set[str] = field(default_factory=set)
    token_calls: list[dict[str, Any]] = field(default_factory=list)
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    accepted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def newest(self) -> tuple[str, float] | None:
        with self.lock:
            if not self.issued:
                return None
            token = max(self.issued, key=self.issued.__getitem__)
            return token, self.issued[token]


def build_app(provider: Provider) -> Flask:
    """Token endpoint (refresh_token grant) and an API that checks each bearer token."""
    app = Flask("fake_short_token_provider")

    @app.post("/token")
    def token() -> Response | tuple[Response, int]:
        form = request.form
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return jsonify(error="invalid_client"), 401
        if form.get("grant_type") != "refresh_token":
            return jsonify(error="unsupported_grant_type"), 400
        with provider.lock:
            if form.get("refresh_token") not in provider.refresh_tokens:
                return jsonify(error="invalid_grant"), 400
            access = "at-" + secrets.token_hex(8)
            now = time.time()
            provider.issued[access] = now
            provider.token_calls.append({"at": now, "grant": "refresh_token"})
        return jsonify(access_token=access, token_type="Bearer", expires_in=int(provider.lifetime))

    @app.get("/api")
    def api() -> Response | tuple[Response, int]:
        header = request.headers.get("Authorization", "")
        access = header.removeprefix("Bearer ")
        now = time.time()
        with provider.lock:
            issued = provider.issued.get(access)
            if issued is None:
                reason = "unknown"
            elif access in provider.revoked:
                reason = "revoked"
            elif now >= issued + provider.lifetime:
                reason = "expired"
            else:
                provider.accepted += 1
                return jsonify(ok=True)
            provider.refusals[reason] += 1
        return jsonify(error="invalid_token"), 401

    return app


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Conduct one run; returns the report."""
    settings = load_settings()
    provider = Provider(float(args.lifetime))
    seed = "rt-" + secrets.token_hex(8)
    provider.refresh_tokens.add(seed)
    server = make_server("127.0.0.1", 0, build_app(provider), threaded=True)
    serving = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_port}"
    settings.connections_file.write_text(CONNECTIONS.format(url=url), encoding="utf-8")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    engine.dispose()
    client = redis.Redis.from_url(settings.broker_url or "")
    live = live_connections(settings, session_factory(make_engine(settings.database_url)), client)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.connections.refresh_load",
                "worker",
                "--url",
                f"{url}/api",
                "--threads",
                str(args.threads),
                "--pause",
                repr(PAUSE_REAL * args.speed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.workers)
    ]
    try:
        for worker in workers:  # each has built its runtime and is ready to call
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        live().bootstrap_refresh_token(LINK, seed)  # connected: one token call before the run
        started, wall_started = time.time(), _wall_clock(client)
        until = started + args.lifetimes * provider.lifetime
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{until!r}\n")
            worker.stdin.flush()
        forced_at = _force_one_401(provider, started, until)
        tallies = []
        for worker in workers:
            # Timeouts run on the (fast) clock too: a minute of wall-clock time.
            out, _ = worker.communicate(timeout=60 * args.speed)
            ok = worker.returncode == 0
            tallies.append(json.loads(out) if ok else {"exit": worker.returncode})
        ended, wall_ended = time.time(), _wall_clock(client)
    finally:
        for worker in workers:  # only on failure: each has exited by now otherwise
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        server.shutdown()
        serving.join(timeout=5)
        live().close()
    return {
        "lifetime": provider.lifetime,
        "started": started,
        "ended": ended,
        "wall_seconds": wall_ended - wall_started,
        "forced_401_at": forced_at,
        "token_calls": [call["at"] for call in provider.token_calls],
        "refusals": dict(provider.refusals),
        "accepted": provider.accepted,
        "workers": tallies,
    }


def _wall_clock(client: redis.Redis) -> float:
    """The wall-clock time, from Redis (which runs outside libfaketime)."""
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def _force_one_401(provider: Provider, started: float, until: float) -> float | None:
    """In the second lifetime, when the token in use is three quarters of a lifetime old,
    the provider revokes it: the API answers 401 to it from then on."""
    forced_at = None
    while time.time() < until:
        time.sleep(provider.lifetime / 200)
        newest = provider.newest()
        if forced_at is not None or newest is None:
            continue
        access, issued = newest
        if issued > started and time.time() - issued >= 0.75 * provider.lifetime:
            with provider.lock:
                provider.revoked.add(access)
            forced_at = time.time()
    return forced_at


def work(args: argparse.Namespace) -> dict[str, Any]:
    """Call the API through the connection from several threads, from when the conductor
    says (on stdin: until when) to then."""
    runtime = build_runtime(load_settings())
    runtime.clients.http(None).close()  # imports done; nothing is called yet
    print("ready", flush=True)
    until = float(sys.stdin.readline())
    statuses: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def loop() -> None:
        while time.time() < until:
            try:
                with runtime.clients.http(LINK) as client:
                    outcome = str(client.get(args.url).status_code)
                with lock:
                    statuses[outcome] += 1
            except Exception as exc:  # noqa: BLE001 - tallied and reported, not hidden
                with lock:
                    errors[f"{type(exc).__name__}: {exc}"] += 1
            time.sleep(args.pause)

    threads = [threading.Thread(target=loop) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"pid": os.getpid(), "statuses": dict(statuses), "errors": dict(errors)}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    conduct = sub.add_parser("run")
    conduct.add_argument("--lifetime", type=float, required=True)
    conduct.add_argument("--lifetimes", type=float, default=2.2)
    conduct.add_argument("--speed", type=float, required=True)
    conduct.add_argument("--workers", type=int, default=3)
    conduct.add_argument("--threads", type=int, default=4)
    worker = sub.add_parser("worker")
    worker.add_argument("--url", required=True)
    worker.add_argument("--threads", type=int, default=4)
    worker.add_argument("--pause", type=float, default=0.1)
    args = parser.parse_args()
    report = run(args) if args.role == "run" else work(args)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
