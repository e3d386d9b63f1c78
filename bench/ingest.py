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
from dataclasses import dataclass
from pathlib import Path

from harness import (
    TOKEN,
    WEB_THREADS,
    WEB_WORKERS,
    BenchError,
    LoadResult,
    Processes,
    Row,
    cpu_seconds,
    deskwire_command,
    deskwire_env,
    gunicorn,
    pg_schema,
    postgres_url,
    process_group,
    processes,
    redis_server,
    rounds_text,
    upgrade_database,
    wait_for_http,
    wrk,
)

from deskwire.embedded import free_port

TARGET = 0.5  # deskwire ≥ half the naive Celery endpoint
# Each endpoint is measured this many times, the endpoints in turn, and its best run counts:
# wrk's keep-alive connections are accepted by either gunicorn process at random, and a
# run whose connections all land on one process measures half the server (seen for every
# endpoint: the naive one served 341-1,230 req/s in runs a few seconds apart).
ROUNDS = 3


@dataclass(frozen=True)
class Served:
    """One wrk run against one endpoint and what its server processes spent on it."""

    load: LoadResult
    cpu_ms: float  # CPU of the server's process tree per request


def _serve(url: str, label: str, pid: int, seconds: float) -> Served:
    """Warm up, then one measured wrk run, with the CPU of the server's processes."""
    wrk(url, label=f"{label}-warm", seconds=1)
    pids = process_group(pid)
    before = [cpu_seconds(p) for p in pids]
    load = wrk(url, label=label, seconds=seconds)
    spent = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    return Served(load, 1000 * sum(spent) / max(1, load.requests))


def _best(runs: list[Served]) -> Served:
    return max(runs, key=lambda run: run.load.rps)


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


def _start(
    group: Processes, name: str, command: list[str], env: dict[str, str], port: int
) -> tuple[str, int]:
    """Start a server and wait for it; its URL and pid."""
    child = group.start(name, command, env)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/webhooks/sdp", child)
    return url, child.pid


def run(quick: bool = False) -> list[Row]:
    """Measure and return the rows of the results table."""
    seconds, rounds = (2.0, 1) if quick else (5.0, ROUNDS)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        redis_url = stack.enter_context(redis_server(folder / "redis"))
        group = stack.enter_context(processes(folder / "logs"))
        base_env = {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_TOKEN": TOKEN}
        base_env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
        urls: dict[str, tuple[str, int]] = {}
        for name, app in (("bare", "_baseline_app:bare"), ("celery", "_baseline_app:naive_celery")):
            port = free_port()
            urls[name] = _start(group, name, gunicorn(app, port), base_env, port)
        database_urls: dict[str, str] = {}
        for db, database_url in databases(stack, folder):
            port = free_port()
            env = deskwire_env(folder / db, database_url, redis_url)
            upgrade_database(env)
            command = deskwire_command(
                "web", "--port", str(port), "--workers", str(WEB_WORKERS),
                "--threads", str(WEB_THREADS),
            )  # fmt: skip
            urls[db] = _start(group, f"deskwire-{db}", command, env, port)
            database_urls[db] = database_url
        # Rounds alternate the endpoints, so a slow minute of the machine hits them all.
        runs: dict[str, list[Served]] = {name: [] for name in urls}
        for round_ in range(rounds):
            for name, (web_url, pid) in urls.items():
                runs[name].append(_serve(web_url, f"{name}-r{round_}", pid, seconds))
        for db, database_url in database_urls.items():
            stored = _stored(database_url)  # a fresh database: every row is from this run
            accepted = sum(run.load.requests - run.load.errors for run in runs[db])
            if stored < accepted:
                raise BenchError(f"{db}: {accepted} webhooks answered 2xx, {stored} stored")
        best = {name: _best(found) for name, found in runs.items()}
        bare, celery = best["bare"], best["celery"]
        for name, key in (("bare LPUSH endpoint", "bare"), ("naive Celery endpoint", "celery")):
            rows.append(Row(f"ingest: {name}", _rate(best[key], runs[key])))
        for db in database_urls:
            served = best[db]
            ratio = served.load.rps / celery.load.rps
            rows.append(
                Row(
                    f"ingest {db} vs naive Celery",
                    _rate(served, runs[db]),
                    _rate(celery),
                    ratio,
                    f">= {TARGET:.2f}x",
                    ratio >= TARGET,
                )
            )
            rows.append(
                Row(
                    f"ingest {db} vs bare LPUSH",
                    _rate(served),
                    _rate(bare),
                    served.load.rps / bare.load.rps,
                )
            )
            rows.append(
                Row(
                    f"ingest {db}: server CPU per request",
                    f"{served.cpu_ms:.2f} ms",
                    f"naive Celery {celery.cpu_ms:.2f} ms",
                    served.cpu_ms / celery.cpu_ms,
                )
            )
    return rows


def _rate(served: Served, rounds: list[Served] | None = None) -> str:
    """The best round; with ``rounds``, every round's rate after it."""
    load = served.load
    errors = f", {load.errors} errors" if load.errors else ""
    text = f"{load.rps:,.0f} req/s (p99 {load.p99_ms:.0f} ms{errors})"
    return text + rounds_text([run.load.rps for run in rounds or []])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    from report import print_table

    print_table(run(parser.parse_args().quick))
