"""Every benchmark of deskwire in one run, printed as one table of ratios.

    bench/run.sh [--quick]          (or: .venv/bin/python bench/all.py [--quick])

Each figure is compared with a baseline measured in the same run on the same machine:
read the ratios, not the absolute numbers. PostgreSQL is measured too when
DESKWIRE_BENCH_DATABASE_URL (or DESKWIRE_TEST_DATABASE_URL) is set. Needs wrk
(``apt-get install -y wrk``). ``--quick`` makes every run short (CI smoke: the harness keeps
working); the full run takes about ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import end_to_end
import ingest
import reconcile
import rules_matching
from harness import ROOT, Row, have_wrk, postgres_url
from report import print_table

SECTIONS = {
    "ingest": ingest.run,
    "end_to_end": end_to_end.run,
    "rules": rules_matching.run,
    "reconcile": reconcile.run,
}


def _machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    parser.add_argument(
        "--only", choices=sorted(SECTIONS), action="append", help="run only these sections"
    )
    args = parser.parse_args()
    if not have_wrk():
        print("bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows: list[Row] = []
    for name in args.only or list(SECTIONS):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows.extend(SECTIONS[name](args.quick))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    databases = "SQLite and PostgreSQL" if postgres_url() else "SQLite (no PostgreSQL set)"
    print(
        f"\ndeskwire {_commit()}, {when}, {_machine()}; {databases}; "
        f"{'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s\n"
    )
    print_table(rows)
    missed = [row.name for row in rows if row.met is False]
    if missed:
        print(f"\n{len(missed)} target(s) not met: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
