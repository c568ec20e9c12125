#!/usr/bin/env bash
# GPU check (CUDA machines): F-DPO and F²C trainers in bf16 under DeepSpeed ZeRO-2 and ZeRO-3 on one GPU, on a tiny
# random model plus every model found locally (the embedded SmolLM2 and any HF-cache snapshot), printing step times
# and peak GPU memory, then the quick eval suite on the vLLM backend (CUDA defaults) with its wall time. Writes
# gpu_check_out/gpu_check.json and .md (copy the table into benchmarks/RESULTS.md with the card's name).
# Usage: bash scripts/gpu_check.sh [--max-models N] [--steps N] [--no-eval]
# On a CPU: .venv/bin/python scripts/gpu_check.py --dry-run (the same code path, tiny model, one step; run in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs a GPU')"
exec "$PY" scripts/gpu_check.py "$@"
