#!/usr/bin/env bash
# One command: set everything up, then run every check and test.
# (Each check is its own statement: `a && b` would hide a failing `a` from set -e.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --profile quick -- -D warnings
echo "== cargo test (core)"
cargo test -p referralgraph-core --profile quick
echo "== ruff"
ruff check python tests benches
ruff format --check python tests benches
echo "== mypy"
mypy python/referralgraph
python -m mypy.stubtest referralgraph._core --mypy-config-file pyproject.toml
echo "== pytest"
python -m pytest "$@"
