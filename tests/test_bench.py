"""The benchmark harness keeps working: its quick mode runs every section (issue 9).

Speed is measured by ``bench/run.sh``, never asserted here; this only checks that the one
command runs, prints every figure, and leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_ROWS = (
    "ingest: bare LPUSH endpoint",
    "ingest: naive Celery endpoint",
    "ingest SQLite vs naive Celery",
    "end to end, 300 events",
    "received -> finished at 20 events/s",
    "received -> finished at 100 events/s",
    "resident memory after",
    "token refreshes, 8 worker processes",
    "first load of 1,000 rules in a new process",
    "matching one event against 1,000 rules",
)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:  # the command line, or the environment (deskwire's paths are settings)
                seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            except OSError:
                continue
            if text.encode() in seen:
                shown = seen[:200].replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {shown}")
    return found


@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_quick_mode_runs_every_benchmark_and_stops_what_it_started(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk); .ci/run installs it")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # every path the bench makes is under here
    result = subprocess.run(
        [str(ROOT / "bench" / "run.sh"), "--quick"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    table = result.stdout
    for row in EXPECTED_ROWS:
        assert f"| {row}" in table, f"missing {row!r} in:\n{table}"
    if os.environ.get("DESKWIRE_TEST_DATABASE_URL"):
        assert "| ingest PostgreSQL vs naive Celery" in table
    assert _processes_mentioning(str(tmp_path)) == []
