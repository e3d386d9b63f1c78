#!/usr/bin/env bash
# Set up and run deskwire: web (:8000), worker and Flower (:5555), with its own Redis and
# SQLite unless DESKWIRE_BROKER_URL / DESKWIRE_DATABASE_URL say otherwise.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
# First run: start from the examples; ./config is yours to edit afterwards.
if [ ! -e config ]; then
  mkdir -p config
  cp -r examples/rules config/rules
  cp examples/connections.yml config/connections.yml
  echo "created ./config from examples/ (rules and connections)"
fi
exec .venv/bin/deskwire serve "$@"
