#!/usr/bin/env bash
# Install what the browser tests (tests/e2e, marker `browser`) need; safe to run again.
#  - Debian's chromium at /usr/bin/chromium (apt), when missing and apt is available;
#  - the playwright Python package into .venv (the driver only: no `playwright install`, no browser download).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
elif command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
else
  echo "chromium is missing and apt-get is not available: install Chromium at /usr/bin/chromium" >&2
  exit 1
fi

PY=".venv/bin/python"
if [ -x "$PY" ]; then
  if ! "$PY" -c "import playwright" 2>/dev/null; then
    "$PY" -m pip install --quiet playwright
  fi
  echo "playwright: $("$PY" -c 'from importlib.metadata import version; print(version("playwright"))')"
fi
