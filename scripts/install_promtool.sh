#!/usr/bin/env bash
# Install promtool when it is missing: tests/deploy runs `promtool check rules` and `promtool test rules`
# on deploy/prometheus/. Idempotent (does nothing when promtool is on PATH), quiet when it works, and
# prints apt's output and a non-zero status when it does not. Debian/Ubuntu only: promtool ships in the
# `prometheus` package; elsewhere install Prometheus from https://prometheus.io/download/.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

fail() {
  echo "install_promtool: $*" >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || fail "promtool is missing and there is no apt-get here; install Prometheus (it contains promtool) by hand."

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "promtool is missing; installing it needs root (or sudo)."
  sudo=(sudo)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
# --no-install-recommends: only the binaries, no exporters or web assets the tests do not use.
if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus; } >"$log" 2>&1; then
  cat "$log" >&2
  fail "apt-get could not install the prometheus package (output above)."
fi

command -v promtool >/dev/null 2>&1 || fail "the prometheus package is installed but promtool is not on PATH."
