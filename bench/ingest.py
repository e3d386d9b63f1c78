"""Webhook ingest throughput against two baselines served the same way, in the same run.

    .venv/bin/python bench/ingest.py [--quick]

Every endpoint runs under gunicorn (2 processes of 8 threads, as ``deskwire web``) on
loopback and is driven by wrk (its own process; one JSON webhook per request with a distinct
event id):

- ``bare``: token check and one Redis LPUSH;
- ``naive Celery``: token check, then the payload published as a Celery task (defaults);
- ``deskwire``: parse, validate, store the event durably (SQLite; PostgreSQL too when
  DESKWIRE_BENCH_DATABASE_URL or DESKWIRE_TEST_DATABASE_URL is set), queue the task, reply.

After each deskwire run the stored events are counted: every 202 must be a stored row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from harness import (
    TOKEN,
    WEB_THREADS,
    WEB_WORKERS,
    BenchError,
    LoadResult,
    Processes,
    Row,
    deskwire_command,
    deskwire_env,
    gunicorn,
    pg_schema,
    postgres_url,
    processes,
    redis_server,
    upgrade_database,
    wait_for_http,
    wrk,
)

from deskwire.embedded import free_port

TARGET = 0.5  # deskwire ≥ half the naive Celery endpoint


def _measure(
    group: Processes, name: str, command: list[str], env: dict[str, str], port: int, seconds: float
) -> LoadResult:
    child = group.start(name, command, env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/webhooks/sdp", child)
        wrk(base, label=f"{name}-warm", seconds=1)
        return wrk(base, label=name, seconds=seconds)
    finally:
        group.stop(child)


def _stored(database_url: str) -> int:
    from sqlalchemy import func, select

    from deskwire.database import make_engine
    from deskwire.tables import Event

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Event)) or 0)
    finally:
        engine.dispose()


def databases(stack: ExitStack, folder: Path) -> Iterator[tuple[str, str]]:
    """SQLite, and PostgreSQL (a throw-away schema) when one is configured."""
    yield "SQLite", f"sqlite:///{folder}/bench.db"
    url = postgres_url()
    if url:
        yield "PostgreSQL", stack.enter_context(pg_schema(url))


def run(quick: bool = False) -> list[Row]:
    """Measure and return the rows of the results table."""
    seconds = 2.0 if quick else 8.0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        redis_url = stack.enter_context(redis_server(folder / "redis"))
        group = stack.enter_context(processes(folder / "logs"))
        base_env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_TOKEN": TOKEN}
        bench = str(Path(__file__).resolve().parent)
        base_env["PYTHONPATH"] = bench
        results: dict[str, LoadResult] = {}
        for name, app in (("bare", "_baseline_app:bare"), ("celery", "_baseline_app:naive_celery")):
            port = free_port()
            results[name] = _measure(group, name, gunicorn(app, port), base_env, port, seconds)
        for db, url in databases(stack, folder):
            port = free_port()
            env = deskwire_env(folder / db, url, redis_url)
            upgrade_database(env)
            command = deskwire_command(
                "web",
                "--port",
                str(port),
                "--workers",
                str(WEB_WORKERS),
                "--threads",
                str(WEB_THREADS),
            )
            result = _measure(group, f"deskwire-{db}", command, env, port, seconds)
            stored = _stored(url)  # a fresh database: every row is from this run
            accepted = result.requests - result.errors
            if stored < accepted:
                raise BenchError(f"{db}: {accepted} webhooks answered 2xx, {stored} stored")
            results[db] = result
        bare, celery = results["bare"], results["celery"]
        for name, result in (("bare LPUSH endpoint", bare), ("naive Celery endpoint", celery)):
            rows.append(Row(f"ingest: {name}", _rate(result)))
        for db in [k for k in results if k not in ("bare", "celery")]:
            result = results[db]
            ratio = result.rps / celery.rps
            rows.append(
                Row(
                    f"ingest {db} vs naive Celery",
                    _rate(result),
                    _rate(celery),
                    ratio,
                    f">= {TARGET:.2f}x",
                    ratio >= TARGET,
                )
            )
            rows.append(
                Row(f"ingest {db} vs bare LPUSH", _rate(result), _rate(bare), result.rps / bare.rps)
            )
    return rows


def _rate(result: LoadResult) -> str:
    errors = f", {result.errors} errors" if result.errors else ""
    return f"{result.rps:,.0f} req/s (p99 {result.p99_ms:.0f} ms{errors})"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    from report import print_table

    print_table(run(parser.parse_args().quick))
