#!/usr/bin/env bash
# The main job: run the quickstart notebook on the embedded default model, headless, and write
# the executed notebook and an offline HTML copy to build/.
set -euo pipefail
cd "$(dirname "$0")/.."
LLMLAB_SKIP_BROWSER=1 bash scripts/bootstrap.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
mkdir -p build
for nb in "${@:-examples/quickstart.ipynb}"; do
  jupyter nbconvert --to notebook --execute "$nb" --output-dir build \
    --ExecutePreprocessor.timeout=900
  jupyter nbconvert --to html "build/$(basename "$nb")" --output-dir build
done
echo "demo: wrote build/ ($(ls build | tr '\n' ' '))"
