#!/usr/bin/env bash
# The demo in one command: install, start a server on free ports (embedded SQLite), upload the example models,
# capture, diagnose, print a short run history and a few Prometheus metrics, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
