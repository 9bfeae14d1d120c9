#!/usr/bin/env bash
# Build the isolated environment for the VBench cross-check (`make vbench-env`).
#
# The official `vbench` 0.1.5 wheel pins old transformers/numpy and needs torchvision, which breaks
# beside the main environment's CPU torch. So it lives in its own venv (git-ignored), with vbench
# installed --no-deps plus only what the scoring functions we call import. rfvideo itself is NOT
# installed there: the cross-check tests import it through PYTHONPATH=src.
#
# Usage: tools/vbench_env/setup.sh [VENV_DIR]   (default: .venv-vbench at the repository root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-vbench}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet)

# A matched torch/torchvision pair first (a CUDA build that runs on the CPU; ~6 GB).
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
# VBench itself without its (outdated) pins.
"${PIP[@]}" --no-deps "vbench==0.1.5"
# Only what the called scoring functions import, plus the test runner.
"${PIP[@]}" \
    "decord2>=3.0" \
    "opencv-python-headless" \
    "openai-clip" \
    "omegaconf" \
    "imageio" \
    "easydict" \
    "einops>=0.8" \
    "ftfy" \
    "regex" \
    "tqdm" \
    "scipy" \
    "numpy" \
    "pillow" \
    "pyyaml" \
    "safetensors" \
    "timm" \
    "av>=12,<19" \
    "setuptools<81" \
    "pytest>=8" \
    "pytest-timeout>=2.3"

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md

for name in ("torch", "torchvision", "vbench", "decord2"):
    print(f"{name}=={md.version(name)}")
PY
echo "VBench cross-check environment ready: $VENV"
