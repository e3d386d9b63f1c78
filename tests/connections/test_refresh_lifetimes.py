"""Refresh counts for access tokens of 30 s, 120 s, 300 s and 3,600 s, under load.

Three processes built like deskwire worker processes (four threads each) call an API
through one OAuth 2.0 connection for 2.2 token lifetimes; the fake provider counts the
token refreshes: at most one per lifetime begun, plus one after a 401 it forces. Real time
would take two hours for the 3,600 s tokens, so every process of a run — the provider
included — runs under libfaketime on one shared clock sped up so that a lifetime lasts
8 wall-clock seconds (``tests/connections/refresh_load.py`` explains the parts). Redis
keeps its own clock; deskwire's refresh lock only needs it to expire a lock whose holder
died, which does not happen here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.connections.refresh_load import CLIENT_ID, CLIENT_SECRET

ROOT = Path(__file__).resolve().parents[2]
LIBFAKETIME = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
REAL_SECONDS_PER_LIFETIME = 8.0
LIFETIMES = 2.2  # calls are made for this many token lifetimes


def _libfaketime() -> str | None:
    return next((path for path in LIBFAKETIME if Path(path).exists()), None)


def _run(lifetime: int, tmp_path: Path, redis_url: str) -> tuple[dict[str, Any], float, float]:
    """One accelerated run; returns its report, the speed-up and the wall-clock seconds."""
    library = _libfaketime()
    if library is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime); .ci/run installs it")
    speed = lifetime / REAL_SECONDS_PER_LIFETIME
    (tmp_path / "rules").mkdir()
    env = {
        **os.environ,
        "LD_PRELOAD": library,
        "FAKETIME": f"+0 x{speed}",
        "FAKETIME_DONT_RESET": "1",  # child processes keep the conductor's clock
        "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp_path / 'deskwire.db'}",
        # Client-side timeouts run on the fast clock: give each the wall-clock time it
        # has in production (redis-py's 5 s socket timeouts, deskwire's 30 s HTTP timeout,
        # which also bounds the wait for the refresh lock).
        "DESKWIRE_BROKER_URL": (
            f"{redis_url}?socket_timeout={5 * speed}&socket_connect_timeout={5 * speed}"
        ),
        "DESKWIRE_CONNECTIONS_FILE": str(tmp_path / "connections.yml"),
        "DESKWIRE_RULES_DIR": str(tmp_path / "rules"),
        "DESKWIRE_VAR_DIR": str(tmp_path / "var"),
        "DESKWIRE_SECRET_KEY": "refresh-lifetimes-test-key",
        "DESKWIRE_HTTP_TIMEOUT": str(max(30.0, 30.0 * speed)),
        "LOAD_CLIENT_ID": CLIENT_ID,
        "LOAD_CLIENT_SECRET": CLIENT_SECRET,
    }
    env.pop("FAKETIME_SHARED", None)
    command = [sys.executable, "-m", "tests.connections.refresh_load", "run"]
    command += ["--lifetime", str(lifetime), "--lifetimes", str(LIFETIMES), "--speed", str(speed)]
    begun = time.monotonic()
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )
    wall = time.monotonic() - begun
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), speed, wall


@pytest.mark.parametrize("lifetime", [30, 120, 300, 3600], ids=lambda s: f"{s}s")
def test_refreshes_at_most_once_per_lifetime(lifetime: int, tmp_path: Path, redis_url: str) -> None:
    report, speed, wall = _run(lifetime, tmp_path, redis_url)
    elapsed = report["ended"] - report["started"]
    # The clock really ran fast: by Redis's clock (not faked), the run took 1/speed of the
    # time the processes saw pass.
    assert elapsed >= LIFETIMES * lifetime
    assert 0.8 * speed < elapsed / report["wall_seconds"] < 1.2 * speed, (report, speed)
    refreshes = [at - report["started"] for at in report["token_calls"] if at > report["started"]]
    assert report["forced_401_at"] is not None, "the provider never got to force a 401"
    # Calls are made for LIFETIMES lifetimes: one refresh per lifetime begun, one for the 401.
    allowed = math.ceil(LIFETIMES) + 1
    assert len(refreshes) <= allowed, (refreshes, report)
    # …and enough of them that the calls kept working: no token was used past its expiry.
    assert len(refreshes) >= math.floor(LIFETIMES), report
    assert report["refusals"].get("expired", 0) == 0, report
    assert report["refusals"].get("unknown", 0) == 0, report
    for worker in report["workers"]:
        assert "exit" not in worker, report
        assert not worker["errors"], worker
        assert worker["statuses"].get("200", 0) >= 10 * LIFETIMES, worker
    calls = sum(sum(worker["statuses"].values()) for worker in report["workers"])
    print(  # the figures for docs/connections.md and the benchmark table
        f"\nlifetime {lifetime} s: {len(refreshes)} refreshes at "
        f"{', '.join(f'{at:.0f}' for at in refreshes)} s over {LIFETIMES * lifetime:.0f} s "
        f"of calls ({calls} calls from 3 processes, one 401 forced at "
        f"{report['forced_401_at'] - report['started']:.0f} s; refused: {report['refusals']});"
        f" x{speed:g}, {wall:.1f} s wall clock"
    )
