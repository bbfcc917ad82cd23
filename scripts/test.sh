#!/usr/bin/env bash
# Install the dev dependencies (and, as later issues need them, the servers), then run
# every check and the whole test suite. Used by .ci/run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Servers for later issues go here, e.g.:
#   apt-get update && apt-get install -y redis-server
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

echo "== ruff"
ruff check src tests
echo "== mypy --strict"
mypy --strict src/
echo "== mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
