#!/usr/bin/env bash
# Build the isolated environment for the reward cross-checks (`make reward-env`).
#
# The official reward packages cannot live beside the main environment: hpsv2 and open_clip need
# torchvision (PyPI's torchvision does not import beside our CPU torch), ImageReward's BLIP code imports
# helpers that transformers removed from `modeling_utils` in 4.56 (so transformers stays < 4.56 here),
# and hpsv2 / image-reward pin test runners and old libraries we do not want. So they live in their own
# venv (git-ignored by the `.gitignore` written into it), installed --no-deps where their pins are
# stale, plus only what the code paths we call import. rfvideo itself is NOT installed there: the
# cross-check tests import it through PYTHONPATH=src. No weights are downloaded, by this script or the tests.
#
# Usage: tools/reward_env/setup.sh [VENV_DIR]   (default: .venv-rewards at the repository root)
# RFVIDEO_ENV_DRY_RUN=1 prints the commands instead of running them (tools/isolated_env.sh).
# A fresh build took 12 min on 2 loaded cores (torch/torchvision come from this machine's disk; ~6 GB).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../isolated_env.sh"

env_init "${1:-$ROOT/.venv-rewards}"
env_torch
# The reference packages. hpsv2 vendors its own open_clip copy (the one its scoring path uses); its and
# ImageReward's declared pins (pytest==7.2, timm==0.6.13, datasets, diffusers, accelerate...) are skipped.
env_pip --no-deps "hpsv2==1.2.0" "image-reward==1.5" "open_clip_torch==3.3.0" "openai-clip==1.0.1"
# What the called code paths import, the libraries rfvideo's reward code needs (its loaders resolve paths
# through rfvideo.models, which imports diffusers), and the test runner.
# pip then lists the skipped pins of hpsv2 / image-reward as conflicts: expected, the code paths we call
# run with these versions (tests/reward_crosscheck proves it).
env_pip \
    "transformers>=4.46,<4.56" \
    "clint==0.5.1" \
    "fairscale==0.4.13" \
    "diffusers>=0.33,<0.36" \
    "huggingface_hub<1" \
    "tokenizers" \
    "timm>=1.0.17" \
    "torchmetrics>=1.4" \
    "ftfy>=6" \
    "regex" \
    "tqdm" \
    "numpy" \
    "pillow" \
    "safetensors" \
    "einops>=0.8" \
    "setuptools<81" \
    "pytest>=8" \
    "pytest-timeout>=2.3"

# hpsv2 1.2.0's wheel omits the BPE vocabulary its vendored tokenizer opens at import (upstream's known
# packaging bug); it is OpenAI CLIP's `bpe_simple_vocab_16e6.txt.gz`, which open_clip ships: copy it over.
env_python <<'PY'
import pathlib
import shutil

import open_clip

site = pathlib.Path(open_clip.__file__).parent
src = site / "bpe_simple_vocab_16e6.txt.gz"
dst = site.parent / "hpsv2" / "src" / "open_clip" / src.name
if not dst.exists():
    shutil.copyfile(src, dst)
PY

env_versions torch torchvision hpsv2 image-reward open_clip_torch openai-clip transformers timm torchmetrics \
    ftfy fairscale
env_done "Reward cross-check environment"
