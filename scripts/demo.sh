#!/usr/bin/env bash
# The main job: run the quickstart notebook on the embedded default model, headless, and write
# the executed notebook and an offline HTML copy to build/.
set -euo pipefail
cd "$(dirname "$0")/.."
LLMLAB_SKIP_BROWSER=1 bash scripts/bootstrap.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python -m llmlab.report --execute -o build "${@:-examples/quickstart.ipynb}"
echo "demo: open build/quickstart.html (offline, self-contained) or build/quickstart.ipynb"
