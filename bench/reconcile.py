"""Reconciliation: 10,000 changed requests at a fake SDP, read and turned into events.

    .venv/bin/python bench/reconcile.py [--quick]

A fake SDP Cloud served by this process holds N requests changed in the last half hour
(none of their webhooks came). ``deskwire reconcile run`` (the installed command, as an
operator runs it; SQLite, and PostgreSQL when configured) reads them and stores and queues
one event per change. Measured: SDP calls made (searches and token requests, counted at the
fake), wall time of the run and of the command, events made; then a second run, which
finds every change claimed or waiting and makes nothing. The baseline, in the same run, is
reading the same pages with a bare httpx loop that stores nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from harness import (
    ROOT,
    Row,
    deskwire_command,
    deskwire_env,
    pg_schema,
    postgres_url,
    redis_server,
    upgrade_database,
)
from sqlalchemy import func, select

from deskwire.database import make_engine
from deskwire.tables import Event
from tests.fakes.sdp import FakeSdp
from tests.integration import sdp_connections_yaml
from tests.wsgi_server import serving

FULL, QUICK = 10_000, 1_000


def seeded_fake(count: int) -> FakeSdp:
    """A fake SDP with ``count`` requests changed over the last half hour, oldest first."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    fake = FakeSdp(clock_ms=now_ms - 1_800_000)
    step = max(1, 1_500_000 // count)  # all of them older than the 2-minute delay
    for number in range(count):
        fake.edit_request(str(100_000 + number), subject=f"changed {number}",
                          status={"name": "Open"}, priority={"name": "High"})  # fmt: skip
        fake.clock_ms += step - 1000  # edit_request moved it by a second
    return fake


def bare_paging(fake: FakeSdp, url: str) -> tuple[int, float]:
    """Read every page as reconciliation does, storing nothing: (calls, seconds)."""
    token = httpx.post(
        f"{url}/oauth/v2/token",
        data={"client_id": fake.client_id, "client_secret": fake.client_secret,
              "grant_type": "refresh_token", "refresh_token": fake.refresh_token},
    ).json()["access_token"]  # fmt: skip
    headers = {"Authorization": f"Zoho-oauthtoken {token}",
               "Accept": "application/vnd.manageengine.sdp.v3+json"}  # fmt: skip
    started, calls, start = time.monotonic(), 0, 1
    with httpx.Client(headers=headers, timeout=30) as client:
        while True:
            info = {
                "list_info": {
                    "row_count": 100,
                    "start_index": start,
                    "sort_field": "last_updated_time",
                    "sort_order": "asc",
                }
            }
            body = client.get(f"{url}/app/{fake.portal}/api/v3/requests",
                              params={"input_data": json.dumps(info)}).json()  # fmt: skip
            calls += 1
            if not body["list_info"]["has_more_rows"]:
                break
            start += 100
    return calls, time.monotonic() - started


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'deskwire.db'}"
        return
    url = postgres_url()
    assert url is not None
    with pg_schema(url) as schema_url:
        yield schema_url


def measure(kind: str, count: int) -> list[Row]:
    """One database: seed, run twice, count; every process and server stopped on exit."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per fake SDP call
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-rec-")))
        fake = seeded_fake(count)
        url = stack.enter_context(serving(fake.app()))
        redis_url = stack.enter_context(redis_server(folder / "redis"))
        database_url = stack.enter_context(database(kind, folder))
        (folder / "connections.yml").write_text(sdp_connections_yaml(url, fake))
        env = deskwire_env(
            folder, database_url, redis_url,
            SDP_CLIENT_ID=fake.client_id, SDP_CLIENT_SECRET=fake.client_secret,
            SDP_REFRESH_TOKEN=fake.refresh_token,
            DESKWIRE_RECONCILE_MAX_CALLS=str(count // 100 + 10),
        )  # fmt: skip
        upgrade_database(env)
        base_calls, base_seconds = bare_paging(fake, url)
        fake.calls.clear()
        tokens_before = fake.token_requests

        def run() -> tuple[float, str]:
            started = time.monotonic()
            done = subprocess.run(deskwire_command("reconcile", "run"), env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=900)  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"reconcile run failed:\n{done.stdout}\n{done.stderr}")
            return time.monotonic() - started, done.stdout.strip()

        first_wall, first_out = run()
        searches = len(fake.calls)
        tokens = fake.token_requests - tokens_before
        engine = make_engine(database_url)
        with engine.connect() as conn:
            events = conn.scalar(select(func.count()).select_from(Event).where(Event.reconciled))
        engine.dispose()
        fake.calls.clear()
        second_wall, second_out = run()
        seconds = float(first_out.rsplit(" in ", 1)[1].split("s", 1)[0])
        label = f"reconcile {count:,} changes, {kind}"
        print(f"bench: {kind}: {first_out} | again: {second_out}", file=sys.stderr)
        return [
            Row(f"{label}: SDP calls", f"{searches} searches + {tokens} token",
                f"{base_calls} (bare paging)"),
            Row(f"{label}: run time", f"{seconds:.1f} s ({count / seconds:,.0f} changes/s)",
                f"{base_seconds:.1f} s (bare paging)", seconds / base_seconds),
            Row(f"{label}: command wall time", f"{first_wall:.1f} s"),
            Row(f"{label}: events made", f"{events:,}", f"{count:,} changes", target="= changes",
                met=events == count),
            Row(f"{label}: second run", f"{len(fake.calls)} searches, {second_wall:.1f} s; "
                f"{second_out.split(', ', 2)[-1]}"),
        ]  # fmt: skip


def run(quick: bool) -> list[Row]:
    """The rows of this section (``bench/all.py``)."""
    count = QUICK if quick else FULL
    rows = measure("sqlite", count)
    if postgres_url():
        rows += measure("postgresql", count)
    return rows


def main() -> int:
    from report import print_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK:,} changes, not {FULL:,}")
    print_table(run(parser.parse_args().quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
