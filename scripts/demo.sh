#!/usr/bin/env bash
# Quick start: install, then audit the bundled example models (one healthy, several broken on purpose).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/layerscope audit examples/models --fail-on never "$@"
