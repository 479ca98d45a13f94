#!/usr/bin/env bash
# The whole test suite (fast and slow tiers, browser tests included). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
ruff check . && ruff format --check .
python -m pytest "$@"
