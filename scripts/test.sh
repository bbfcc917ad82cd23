#!/usr/bin/env bash
# Install the dev dependencies (and, as later issues need them, the servers), then run every
# check and the whole test suite. Arguments are passed to pytest. Used by .ci/run on a fresh
# Debian machine (as root, only PyPI reachable).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The interpreter to install into and test with: $PYTHON, else python, else python3. Tools are run
# as `python -m <tool>` so they come from that interpreter even before a shim rehash.
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

# Servers the tests start themselves (on 127.0.0.1, free ports): Redis for the Celery plugin.
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
    else
        echo "redis-server is missing: install it (Debian: apt-get install -y redis-server)" >&2
        exit 1
    fi
fi

PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" -e ./plugins/pyworkflow-celery

echo "== ruff check src tests plugins bench"
"$PYTHON" -m ruff check src tests plugins bench
echo "== mypy --strict src/ and plugin sources"
"$PYTHON" -m mypy --strict src/
(cd plugins/pyworkflow-celery && "$PYTHON" -m mypy --strict src)
echo "== mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 "$PYTHON" -m mkdocs build --strict -q -d /tmp/pyworkflow-site
echo "== pytest"
if [ "$#" -eq 0 ]; then
    set -- tests plugins/pyworkflow-celery/tests
fi
"$PYTHON" -m pytest -q -p no:cacheprovider "$@"
