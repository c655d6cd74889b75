#!/usr/bin/env bash
# Create .venv with Python 3.11 and install layerscope with its dev tools (idempotent, quiet): the server's
# distribution (this folder) and the client's (client/, its own distribution: `pip install ./client` alone
# is the client-only install), both editable.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The server names the client by its path (a direct reference), which pip installs as a plain copy and will
# not combine with an editable install of the same path in one command: so the server and its dependencies
# first, then the client again, editable, so that edits to client/ take effect.
"${PIP[@]}" -e '.[dev]'
"${PIP[@]}" --no-deps -e ./client
