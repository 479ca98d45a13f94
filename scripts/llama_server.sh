#!/usr/bin/env bash
# Install llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) into .venv, for the
# served-engine tests only: llmlab itself never needs it. The wheel is built from source once for
# a portable CPU baseline and cached outside the repository, keyed by version + build flags +
# Python, so later runs (and fresh clones on the same machine) install it in seconds.
#
# Why portable flags: -DGGML_NATIVE=ON produced a binary that died with "Illegal instruction" on
# these machines (docs/served.md). AVX2/FMA/F16C is the baseline every x86-64 CI runner has.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.3.36
cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"

[ -x .venv/bin/python ] || { echo "llama_server: run scripts/bootstrap.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
. .venv/bin/activate

py_tag=$(python -c 'import sys, platform; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
key=$(printf '%s|%s|%s' "$version" "$cmake_args" "$py_tag" | sha256sum | cut -c1-12)
cache_root=${LLMLAB_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmlab/wheels}
wheel_dir="$cache_root/llama-cpp-python-$version-$key"

installed() {
  python - "$version" <<'EOF' 2>/dev/null
import importlib.metadata as md, importlib.util, sys
ok = md.version("llama_cpp_python") == sys.argv[1] and importlib.util.find_spec("uvicorn")
sys.exit(0 if ok else 1)
EOF
}
if installed; then
  exit 0
fi

mkdir -p "$cache_root"
# One build at a time on this machine (several clones may run their tests at once).
exec 9>"$cache_root/.build.lock"
flock 9
if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "llama_server: building llama-cpp-python $version from source (about 5 min, once)" >&2
  start=$(date +%s)
  tmp_dir=$(mktemp -d "$cache_root/.build-XXXXXX")
  CMAKE_ARGS="$cmake_args" FORCE_CMAKE=1 python -m pip wheel -q --no-deps \
    --no-binary llama-cpp-python "llama-cpp-python==$version" -w "$tmp_dir"
  rm -rf "$wheel_dir" && mv "$tmp_dir" "$wheel_dir"
  echo "llama_server: built in $(($(date +%s) - start)) s -> $wheel_dir" >&2
fi
wheel=$(ls "$wheel_dir"/llama_cpp_python-*.whl | head -n1)
python -m pip install -q "${wheel}[server]"
