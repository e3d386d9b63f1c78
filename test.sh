#!/usr/bin/env bash
# Set up and run every check: ruff (format + lint), mypy, the layer check and pytest.
# Needs nothing running: the suite starts its own Redis. PostgreSQL variants run when
# DESKWIRE_TEST_DATABASE_URL is set (as .ci/run does). Extra arguments go to pytest.
# -rs: the summary lists every skipped test with the reason (what it needs; README "Tests").
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"
ruff format --check .
ruff check .
echo "== mypy"; mypy
echo "== layers"; lint-imports
echo "== pytest"; pytest -rs "$@"
