#!/usr/bin/env bash
# Install the dev dependencies (and, as later issues need them, the servers), then run every
# check and the whole test suite. Arguments are passed to pytest. Used by .ci/run on a fresh
# Debian machine (as root, only PyPI reachable).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The interpreter to install into and test with: $PYTHON, else python, else python3. Tools are run
# as `python -m <tool>` so they come from that interpreter even before a shim rehash.
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"

# Servers the tests start themselves (on 127.0.0.1, free ports, throw-away data dirs): Redis for
# the Celery and Redis plugins, PostgreSQL (initdb/pg_ctl from the Debian packages) for the
# Postgres plugin. Nothing is started here; the Debian packages' own services stay unused.
# Debian's Chromium for the browser tests of the web UI (tests/ui/, Playwright from the dev
# extra drives /usr/bin/chromium; `playwright install` is never run).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        echo "missing packages: ${missing[*]} (Debian: apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
fi

PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
"${PIP[@]}" -e ".[dev]"
PLUGINS=(pyworkflow-celery pyworkflow-redis pyworkflow-postgres pyworkflow-mysql pyworkflow-ray)
for plugin in "${PLUGINS[@]}"; do
    "${PIP[@]}" -e "./plugins/$plugin"
done
SKELETON=examples/plugin-skeleton  # the plugin package docs/plugins.md walks through
"${PIP[@]}" -e "./$SKELETON"

echo "== ruff check src tests plugins bench $SKELETON"
"$PYTHON" -m ruff check src tests plugins bench "$SKELETON"
echo "== mypy --strict src/ and plugin sources"
"$PYTHON" -m mypy --strict src/
for plugin in "${PLUGINS[@]}"; do
    (cd "plugins/$plugin" && "$PYTHON" -m mypy --strict src)
done
(cd "$SKELETON" && "$PYTHON" -m mypy --strict src)
echo "== mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 "$PYTHON" -m mkdocs build --strict -q -d /tmp/pyworkflow-site
echo "== pytest (after ${SECONDS} s of set-up and checks)"
if [ "$#" -eq 0 ]; then
    set -- tests
    for plugin in "${PLUGINS[@]}"; do
        set -- "$@" "plugins/$plugin/tests"
    done
    set -- "$@" "$SKELETON/tests"
fi
"$PYTHON" -m pytest -q -p no:cacheprovider --durations=40 "$@"
echo "== scripts/test.sh took ${SECONDS} s"
