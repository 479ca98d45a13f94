#!/usr/bin/env bash
# The whole test suite (fast and slow tiers, browser tests included). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# llama.cpp's OpenAI-compatible server for the served-engine tests (built once, ~5 min, cached
# outside the repo). Only the tests need it; if the build fails they skip and say why.
if [ "${LLMLAB_SKIP_LLAMA:-0}" != 1 ]; then
  bash scripts/llama_server.sh || echo "test.sh: llama.cpp server build failed; served-engine tests will be skipped" >&2
fi
# vLLM's CPU build for the same tests, in a venv of its own (built once, ~4+ min and 3.5 GB,
# cached outside the repo; its torch pin differs from llmlab's). The same rule: a failed build
# means the vLLM tests skip with the reason.
if [ "${LLMLAB_SKIP_VLLM:-0}" != 1 ]; then
  bash scripts/vllm_server.sh >/dev/null || echo "test.sh: vLLM build failed; vLLM tests will be skipped" >&2
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1
# Two lines, not `a && b`: under `set -e` a failure on the left of && would not stop the run.
ruff check .
ruff format --check .
python -m pytest "$@"
