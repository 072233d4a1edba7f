#!/usr/bin/env bash
# The GPU suite in one command (see README, "GPU suite"): CUDA tests, a full-data bf16 sweep of five datasets x
# ce, scl+ce, gloss+ce into results/gpu/, a summary; non-zero exit on any failure.
#   bash scripts/gpu_suite.sh                    # on a machine with one CUDA GPU
#   bash scripts/gpu_suite.sh --budget-s 600 --parallel 4
#   bash scripts/gpu_suite.sh --tiny --out /tmp/gpu-suite-tiny   # the same code path on a CPU (CI), no FAISS
# Nothing is installed or downloaded: the project runs in place (PYTHONPATH), the encoder is a local float16
# copy (scripts/make_local_encoder.py, made when missing), the data come from $GLOSS_DATA.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="$(command -v python3 || command -v python)"; fi
fi
: "${GLOSS_DATA:?set GLOSS_DATA to the folder holding the datasets (R8/, mr/, ...)}"
export GLOSS_DATA HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
exec "$python" scripts/gpu_suite.py "$@"
