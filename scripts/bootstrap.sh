#!/usr/bin/env bash
# Creates .venv (if missing) and installs referralgraph from this checkout,
# built by maturin in the release profile, with the extras given ("test", ...).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
