#!/usr/bin/env bash
# Build the isolated environment for the VBench cross-check (`make vbench-env`).
#
# The official `vbench` 0.1.5 wheel pins old transformers/numpy and needs torchvision, which breaks
# beside the main environment's CPU torch. So it lives in its own venv (git-ignored), with vbench
# installed --no-deps plus only what the scoring functions we call import. rfvideo itself is NOT
# installed there: the cross-check tests import it through PYTHONPATH=src.
#
# Usage: tools/vbench_env/setup.sh [VENV_DIR]   (default: .venv-vbench at the repository root)
# RFVIDEO_ENV_DRY_RUN=1 prints the commands instead of running them (tools/isolated_env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../isolated_env.sh"

env_init "${1:-$ROOT/.venv-vbench}"
env_torch
# VBench itself without its (outdated) pins.
env_pip --no-deps "vbench==0.1.5"
# Only what the called scoring functions import, plus the test runner.
env_pip \
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

env_versions torch torchvision vbench decord2
env_done "VBench cross-check environment"
