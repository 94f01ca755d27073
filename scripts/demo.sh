#!/usr/bin/env bash
# One command: set everything up, then run the demo on a synthetic program.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/referralgraph demo "$@"
