#!/usr/bin/env bash
# Install the dev dependencies (and, as later issues need them, the servers), then run every
# check and the whole test suite. Arguments are passed to pytest. Used by .ci/run on a fresh
# Debian machine (as root, only PyPI reachable).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The interpreter to install into and test with: $PYTHON, else python, else python3. Tools are run
# as `python -m <tool>` so they come from that interpreter even before a shim rehash.
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

# System packages for later issues go here, e.g.:
#   apt-get update && apt-get install -y redis-server

"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e ".[dev]"

echo "== ruff check src tests"
"$PYTHON" -m ruff check src tests
echo "== mypy --strict src/"
"$PYTHON" -m mypy --strict src/
echo "== mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 "$PYTHON" -m mkdocs build --strict -q -d /tmp/pyworkflow-site
echo "== pytest"
"$PYTHON" -m pytest -q -p no:cacheprovider "$@"
