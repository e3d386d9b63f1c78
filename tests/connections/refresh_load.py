"""Token refreshes under load, over several lifetimes, in accelerated time.

Run by ``test_refresh_lifetimes.py`` as ``python -m tests.connections.refresh_load`` under
libfaketime (``FAKETIME="+0 x<speed>"``, ``FAKETIME_DONT_RESET=1``): this process and the
processes it starts share one clock that runs ``speed`` times faster than the wall clock, so
a 3,600 s token lives 8 s. Nothing of deskwire is mocked: the clock is the system's, as
every process sees it.

``run`` (the conductor): serves the fake OAuth 2.0 provider and API on loopback
(``tests.fakes.oauth``: tokens of ``--lifetime`` seconds; the API refuses unknown, expired and
withdrawn tokens), writes the
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
from typing import Any

import redis

from deskwire.compose import build_runtime, live_connections
from deskwire.database import make_engine, session_factory
from deskwire.schema import upgrade
from deskwire.settings import load_settings
from tests.fakes.oauth import FakeOAuth, running_oauth

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
    authorize_url: {url}/oauth/authorize
    token_url: {url}/oauth/token
    client_id: ${{LOAD_CLIENT_ID}}
    client_secret: ${{LOAD_CLIENT_SECRET}}
connections:
  acme:
    name: Acme
    service: acme_api
"""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Conduct one run; returns the report."""
    provider = FakeOAuth(
        CLIENT_ID, CLIENT_SECRET, expires_in=int(args.lifetime), enforce_expiry=True
    )
    seed = "rt-" + secrets.token_hex(8)
    provider.refresh_tokens.add(seed)
    with running_oauth(provider) as running:
        return _conduct(args, running.url, provider, seed)


def _conduct(args: argparse.Namespace, url: str, provider: FakeOAuth, seed: str) -> dict[str, Any]:
    settings = load_settings()
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
                f"{url}/api/echo",
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
        until = started + args.lifetimes * args.lifetime
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(f"{until!r}\n")
            worker.stdin.flush()
        forced_at = _force_one_401(provider, float(args.lifetime), started, until)
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
        live().close()
    return {
        "lifetime": float(args.lifetime),
        "started": started,
        "ended": ended,
        "wall_seconds": wall_ended - wall_started,
        "forced_401_at": forced_at,
        "token_calls": sorted(provider.issued_at.values()),
        "refusals": dict(provider.api_refusals),
        "accepted": provider.api_accepted,
        "workers": tallies,
    }


def _wall_clock(client: redis.Redis) -> float:
    """The wall-clock time, from Redis (which runs outside libfaketime)."""
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def _force_one_401(
    provider: FakeOAuth, lifetime: float, started: float, until: float
) -> float | None:
    """In the second lifetime, when the token in use is three quarters of a lifetime old,
    the provider withdraws it: the API answers 401 to it from then on."""
    forced_at = None
    while time.time() < until:
        time.sleep(lifetime / 200)  # pacing: look 200 times a lifetime, on the shared fast clock
        newest = provider.newest()
        if forced_at is not None or newest is None:
            continue
        access, issued = newest
        if issued > started and time.time() - issued >= 0.75 * lifetime:
            provider.withdraw(access)
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
            time.sleep(args.pause)  # pacing the load generator

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
