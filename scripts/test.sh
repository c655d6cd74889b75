#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: install, lint, type-check, then every test, and the 25 slowest.
# Arguments go to pytest: `bash scripts/test.sh -m "not slow"` is the fast tier (no server, subprocess or
# TensorFlow; tests/conftest.py says what is slow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/install_promtool.sh
bash scripts/install_chromium.sh
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONDONTWRITEBYTECODE=1

# The storage suite runs on PostgreSQL too when the machine's server answers (start it if it is down).
if [ -z "${LAYERSCOPE_TEST_DATABASE_URL:-}" ]; then
  url=postgresql://postgres@127.0.0.1:5432/test
  pg_up() { .venv/bin/python -c "import psycopg,sys; psycopg.connect('$url', connect_timeout=3).close()" 2>/dev/null; }
  if ! pg_up && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >/dev/null 2>&1 || true
    sleep 2
  fi
  if pg_up; then export LAYERSCOPE_TEST_DATABASE_URL=$url; else echo "note: PostgreSQL not reachable; its tests skip"; fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
set +e
.venv/bin/python -m pytest -p no:cacheprovider --durations=25 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
