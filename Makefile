# rfvideo developer targets. `make help` lists them.
PYTHON ?= python
PIP ?= $(PYTHON) -m pip
# Torch is a range in pyproject.toml (GPU users bring their own build). When none is installed we take
# the pinned CPU-or-default wheel so a bare machine does not resolve the newest CUDA stack by accident.
TORCH_FALLBACK ?= torch==2.13.0

.PHONY: help install demo demo-assets test test-slow test-all lint format bench bench-gpu tb clean vbench-env test-vbench reward-env test-rewards-ref serve-demo vbench-check bench-vae-decode bench-memory bench-decoders peer-check

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

install:  ## install rfvideo (editable) with the dev extra; keeps an existing torch
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_FALLBACK)"
	$(PIP) install -e ".[dev]"

demo:  ## offline end-to-end demo on CPU (tiny world, both training stages)
	$(PYTHON) -m rfvideo.demo

test:  ## fast test suite (< 10 min on 2 CPU cores)
	$(PYTHON) -m pytest -q

test-slow:  ## slow tests only
	$(PYTHON) -m pytest -q -m slow

test-all:  ## fast and slow tests
	$(PYTHON) -m pytest -q -m "not vbench and not rewards_ref and not peers"

peer-check:  ## presets side by side against the peers' own code (PEERS_DIR=<folder with their checkouts>, see tests/peer_crosscheck)
	RFVIDEO_PEERS_DIR=$(PEERS_DIR) $(PYTHON) -m pytest -q -s -m peers -p no:cacheprovider tests/peer_crosscheck

lint:  ## ruff
	$(PYTHON) -m ruff check src tests bench notebooks
	$(PYTHON) -m ruff format --check src tests bench

format:  ## ruff autoformat
	$(PYTHON) -m ruff format src tests bench
	$(PYTHON) -m ruff check --fix src tests bench

bench:  ## benchmarks (a few minutes on 2 cores, quiet machine); writes bench/RESULTS.md
	$(PYTHON) bench/pipeline.py
	$(PYTHON) bench/rollout.py
	$(PYTHON) bench/train_step.py
	$(PYTHON) bench/eval.py
	$(PYTHON) bench/serve.py

bench-vae-decode:  ## receptive field and truncated-decode error of the real-width Wan VAE (random weights; ~20 min on 2 cores)
	$(PYTHON) bench/vae_decode.py

bench-decoders:  ## slot decoders vs the Wan VAE: decode s/chunk, first frame, end-to-end FPS, overlap (CPU, quiet machine)
	$(PYTHON) bench/decoders.py

bench-memory:  ## estimate-memory against MemTracker counts of real CPU steps at three sizes
	$(PYTHON) bench/memory.py

bench-gpu:  ## the GPU-only checks at real Wan2.1-1.3B size (bf16 parity, flex, FPS, cache, train-step memory)
	$(PYTHON) bench/device.py --size wan1.3b

vbench-env:  ## build .venv-vbench (official vbench 0.1.5, its own torch/torchvision; ~6 GB)
	bash tools/vbench_env/setup.sh

test-vbench:  ## cross-check our VBench dimensions against VBench's own code (needs `make vbench-env`)
	PYTHONPATH=src .venv-vbench/bin/python -m pytest -q -m vbench -p no:cacheprovider tests/vbench_crosscheck

vbench-check:  ## VBench protocol end to end offline: demo-config checkpoint -> sample -> in-loop + official scores (needs vbench-env; DINO_REPO=<facebookresearch/dino clone> adds subject consistency)
	bash tools/vbench_check.sh

reward-env:  ## build .venv-rewards (hpsv2, image-reward, open_clip, openai-clip, torchmetrics; own torch/torchvision; ~6 GB)
	bash tools/reward_env/setup.sh

test-rewards-ref:  ## cross-check the reward adapters against their reference packages (needs `make reward-env`)
	PYTHONPATH=src .venv-rewards/bin/python -m pytest -q -m rewards_ref -p no:cacheprovider tests/reward_crosscheck

serve-demo:  ## live browser demo on http://127.0.0.1:7860 (rfvideo serve --demo)
	$(PYTHON) -m rfvideo.cli serve --demo

tb:  ## TensorBoard on the default log directory
	$(PYTHON) -m tensorboard.main --logdir outputs --port 6006

clean:  ## remove build and run artefacts
	rm -rf build dist src/*.egg-info .pytest_cache .ruff_cache lightning_logs outputs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
