#!/usr/bin/env bash
# Run every benchmark and print one table of ratios (see bench/README.md). Extra arguments
# (--quick, --only SECTION) go to bench/all.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/all.py "$@"
