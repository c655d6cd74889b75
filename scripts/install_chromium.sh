#!/usr/bin/env bash
# Debian's Chromium for the HTML-report browser test (Playwright drives it; it never downloads a browser).
# Idempotent; needs apt-get and root (or sudo) the first time.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "chromium is missing and there is no apt-get here; install it by hand" >&2; exit 1; }
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "chromium is missing; installing it needs root (or sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
