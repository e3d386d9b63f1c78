"""Webhook ingest throughput and latency, against a bare baseline measured in the same run.

    .venv/bin/python bench/ingest.py [--requests 2000] [--clients 8]

Both servers run under gunicorn with 2 sync workers on loopback; the client sends JSON
webhooks with distinct event ids from threads. The baseline endpoint checks the token and
does one Redis LPUSH; deskwire's parses, validates, stores the event (SQLite, and
PostgreSQL when DESKWIRE_BENCH_DATABASE_URL or DESKWIRE_TEST_DATABASE_URL is set) and
queues the Celery task. Absolute numbers depend on the machine; the ratio is the point.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskwire.embedded import EmbeddedRedis, free_port  # noqa: E402

TOKEN = "bench-token"


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.post(base + "/webhooks/sdp", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited with {process.returncode}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A throw-away schema, so the benchmark leaves nothing in the database."""
    from sqlalchemy import create_engine, text

    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"bench_{time.time_ns()}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def load(base: str, requests: int, clients: int, label: str) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        nonlocal failures
        with httpx.Client(timeout=30) as http:
            for n in counter:
                body = json.dumps(
                    {
                        "event": "request.created",
                        "event_id": f"{label}-{n}",
                        "request": {"id": str(n), "subject": "Bench", "priority": {"name": "Low"}},
                    }
                )
                started = time.perf_counter()
                response = http.post(
                    base + "/webhooks/sdp",
                    content=body,
                    headers={"X-Deskwire-Token": TOKEN, "Content-Type": "application/json"},
                )
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    failures += response.status_code != 202

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "failures": failures,
    }


def gunicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", app]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    results: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        redis_server = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
        redis_url = redis_server.start()
        try:
            env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_TOKEN": TOKEN}
            port = free_port()
            with server(gunicorn("bench._baseline_app:app", port), env, port) as base:
                load(base, 100, args.clients, "warm-baseline")
                results.append(
                    ("baseline: token + LPUSH", load(base, args.requests, args.clients, "b"))
                )
            databases = [("SQLite", f"sqlite:///{tmp}/bench.db")]
            pg = os.environ.get("DESKWIRE_BENCH_DATABASE_URL") or os.environ.get(
                "DESKWIRE_TEST_DATABASE_URL"
            )
            if pg:
                databases.append(("PostgreSQL", stack.enter_context(pg_schema(pg))))
            (Path(tmp) / "rules").mkdir()
            for name, url in databases:
                port = free_port()
                deskwire_env = {
                    **os.environ,
                    "DESKWIRE_BROKER_URL": redis_url,
                    "DESKWIRE_DATABASE_URL": url,
                    "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
                    "DESKWIRE_SECRET_KEY": "bench",
                    "DESKWIRE_ADMIN_PASSWORD": "bench",
                    "DESKWIRE_RULES_DIR": f"{tmp}/rules",
                    "DESKWIRE_CONNECTIONS_FILE": f"{tmp}/connections.yml",
                    "DESKWIRE_VAR_DIR": f"{tmp}/var",
                    "DESKWIRE_LOG_LEVEL": "WARNING",
                }
                command = [sys.executable, "-m", "deskwire", "web", "--port", str(port)]
                label = f"d-{name}-{time.time_ns()}"
                with server(command, deskwire_env, port) as base:
                    load(base, 100, args.clients, label + "-warm")
                    stats = load(base, args.requests, args.clients, label)
                    results.append((f"deskwire ingest, {name}", stats))
        finally:
            redis_server.stop()
    baseline = results[0][1]["rps"]
    print(f"\n{args.requests} webhooks, {args.clients} client threads, gunicorn 2 sync workers")
    widths = (-28, 8, 8, 8, 12, 7)
    header = ("endpoint", "req/s", "p50 ms", "p99 ms", "vs baseline", "errors")
    print(
        " ".join(
            f"{text:{'<' if w < 0 else '>'}{abs(w)}}"
            for text, w in zip(header, widths, strict=True)
        )
    )
    for label, stats in results:
        print(
            f"{label:<28} {stats['rps']:>8.0f} {stats['p50']:>8.1f} {stats['p99']:>8.1f}"
            f" {stats['rps'] / baseline:>11.2f}x {int(stats['failures']):>7}"
        )


if __name__ == "__main__":
    main()
