#!/usr/bin/env bash
# The VBench protocol end to end on the CPU, offline, from a checkpoint of the demo world (`make vbench-check`):
#   1. train the demo config for 20 steps (`rfvideo fit`)   -> last.ckpt
#   2. `rfvideo sample --suite vbench`                       -> {prompt}-{i}.mp4 + protocol.json (streamed)
#   3. `rfvideo vbench` (rfvideo's in-loop code)             -> scores.json
#   4. `rfvideo vbench --official` (VBench 0.1.5's own code) -> official.json, both columns side by side
# Dimensions: temporal flickering (no weights) and subject consistency on seeded random DINO ViT-B/16
# weights, written in DINO's layout for VBench (torch hub's cache under $OUT/torch_home) and converted for
# rfvideo (tools/vbench_weights/dino_to_hf.py), so both columns score the same network. VBench builds
# DINO from facebookresearch/dino's code: give a clone as DINO_REPO (nothing is downloaded); without it
# the official half scores temporal flickering only.
#
# Usage: [DINO_REPO=path/to/dino] tools/vbench_check.sh [OUT]   (default outputs/vbench_check; needs
# `make vbench-env`). About 4 minutes on 2 loaded cores. The numbers are a check of the chain (a 20-step
# tiny model, random DINO), not a VBench result.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/outputs/vbench_check}"
PY="${PYTHON:-python}"
CONFIG="$ROOT/experiments/demo/reward_forcing.yaml"
DIMS=(temporal_flickering subject_consistency)
mkdir -p "$OUT"

# 1. A checkpoint of the demo world (the same YAML `rfvideo fit` documents).
CKPT="$OUT/fit/lightning_logs/run/checkpoints/last.ckpt"
if [ ! -f "$CKPT" ]; then
    "$PY" -m rfvideo.cli fit --config "$CONFIG" --trainer.default_root_dir "$OUT/fit"
fi

# 2. Two prompts per dimension, two seeds each (the full run's seeds and names); a rerun resumes.
"$PY" -m rfvideo.cli sample --suite vbench --config "$CONFIG" --ckpt "$CKPT" --out "$OUT/videos" \
    --dimensions "${DIMS[@]}" --prompts-per-dimension 2 --num-seeds 2 --no-progress

# Seeded random DINO ViT-B/16: DINO's layout where torch.hub looks for VBench, transformers' for rfvideo.
HUB="$OUT/torch_home/hub"
if [ ! -f "$OUT/dino-hf/config.json" ]; then
    "$PY" "$ROOT/tools/vbench_weights/dino_to_hf.py" --random-seed 0 \
        --write-pth "$HUB/checkpoints/dino_vitbase16_pretrain.pth" --out "$OUT/dino-hf"
fi

# 3. rfvideo's in-loop code (each dimension on its own prompts, read from protocol.json).
"$PY" -m rfvideo.cli vbench --videos "$OUT/videos" --dimensions "${DIMS[@]}" \
    --backbone "subject_consistency=$OUT/dino-hf" --out "$OUT/scores.json" --no-progress

# 4. VBench's own evaluator in .venv-vbench, beside ours.
OFFICIAL=(temporal_flickering)
if [ -n "${DINO_REPO:-}" ]; then
    mkdir -p "$HUB/facebookresearch_dino_main"
    cp -r "$DINO_REPO"/. "$HUB/facebookresearch_dino_main/"  # torch.hub's cache of facebookresearch/dino:main
    OFFICIAL=("${DIMS[@]}")
else
    echo "DINO_REPO not set: VBench's side scores temporal_flickering only"
fi
TORCH_HOME="$OUT/torch_home" "$PY" -m rfvideo.cli vbench --videos "$OUT/videos" --official \
    --dimensions "${OFFICIAL[@]}" --backbone "subject_consistency=$OUT/dino-hf" \
    --out "$OUT/official.json" --no-progress
