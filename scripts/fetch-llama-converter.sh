#!/usr/bin/env bash
# Fetch llama.cpp's official GGUF converter (convert_hf_to_gguf.py, its `conversion` package
# and the gguf-py it was written against) for the llama-cpp-python installed in <venv>.
#
#   scripts/fetch-llama-converter.sh [venv] [tools-dir]      (defaults: .venv, $DATA_DIR/tools or var/tools)
#
# The converter ships only in the llama-cpp-python *source* distribution (vendor/llama.cpp), so
# `pip download` fetches that sdist, pinned to the installed version, and only what the
# converter needs is extracted into <tools-dir>/llama.cpp-<version>/ (a few MB). Nothing is
# built or installed, and the environment's `gguf` package is left alone: the converter runs
# with PYTHONPATH on its own gguf-py. Idempotent: an existing extraction is kept; conversion
# jobs also fetch it on first use when this was not run.
set -euo pipefail
venv="${1:-.venv}"
root="$(cd "$(dirname "$0")/.." && pwd)"
data_dir="${DATA_DIR:-$root/var}"
dest="${2:-$data_dir/tools}"
if [ ! -x "$venv/bin/python" ]; then
  echo "error: no virtual environment at $venv (run scripts/install.sh first)" >&2
  exit 1
fi
python="$(cd "$(dirname "$venv/bin/python")" && pwd)/python"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
version="$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
echo "==> llama.cpp converter for llama-cpp-python $version in $dest"
cd "$root"
"$python" -m projects.engine.conversion fetch-converter "$dest" --version "$version"
