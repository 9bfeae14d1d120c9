"""`rfvideo export`: a training checkpoint -> a diffusers-format generator folder (`save_pretrained`,
safetensors) that `CausalWanTransformer.from_pretrained(DIR)` loads.

The config rebuilds the module (the base weights come from the paths it names, exactly as in training),
the checkpoint's state loads strictly on top, and the EMA weights are exported unless `--no-ema`. A LoRA
run's adapters are merged into the base (`W + (alpha / r) B A`), or with `--keep-adapters` written beside
the unmerged base as peft's `adapter_model.safetensors` + `adapter_config.json`
(`rfvideo.models.lora.load_adapters` puts them back).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo export`."""
    parser.add_argument("--config", action="append", required=True, help="the training YAML (repeatable)")
    parser.add_argument("--ckpt", required=True, help="Lightning checkpoint of that config (e.g. last.ckpt)")
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument(
        "--keep-adapters", action="store_true",
        help="LoRA runs: write the base and a separate adapter file instead of merging",
    )  # fmt: skip
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights, not the EMA")


def _mismatch(module: Any, state: dict[str, Any]) -> str | None:
    """The first key or shape on which a checkpoint's state_dict and the config's module disagree."""
    from rfvideo.models.lora import is_adapter_key

    want = module.state_dict()
    ckpt_lora = next((k for k in state if is_adapter_key(k)), None)
    config_lora = next((k for k in want if is_adapter_key(k)), None)
    if ckpt_lora and not config_lora:
        return f"the checkpoint holds LoRA adapters ({ckpt_lora!r}) but the config sets no generator_lora"
    if config_lora and not ckpt_lora:
        return f"the config sets generator_lora ({config_lora!r}) but the checkpoint holds no LoRA adapters"
    for k in want:
        if k not in state:
            return f"key {k!r} expected by the config is missing from the checkpoint"
    for k, v in state.items():
        if k not in want:
            return f"checkpoint key {k!r} is not in the config's model"
        if hasattr(v, "shape") and tuple(v.shape) != tuple(want[k].shape):
            theirs, ours = tuple(v.shape), tuple(want[k].shape)
            return f"{k!r} has shape {theirs} in the checkpoint but {ours} in the config"
    return None


def _size(folder: Path) -> str:
    total = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return f"{total / 2**20:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    """Build the config's module, load the checkpoint, write the chosen generator to `--out`."""
    for c in args.config:
        if not Path(c).is_file():
            raise UsageError(f"--config: no such file: {c}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out: {str(out)!r} exists and is not an empty folder")

    from rfvideo.cli.lightning import build_module
    from rfvideo.cli.preflight import preflight_checkpoint
    from rfvideo.models.lora import lora_options_of, merge_lora, remove_lora, save_adapters
    from rfvideo.utils.checkpoint import load_checkpoint

    preflight_checkpoint(args.ckpt, option="--ckpt")
    module = build_module(args.config)
    try:
        ckpt = load_checkpoint(args.ckpt)
    except ValueError as e:
        raise UsageError(f"--ckpt: {e}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UsageError(f"--ckpt: {args.ckpt!r} is not a Lightning checkpoint (no 'state_dict')")
    problem = _mismatch(module, ckpt["state_dict"])
    if problem is not None:
        raise UsageError(f"--ckpt {args.ckpt!r} is not from config {' + '.join(args.config)}: {problem}")
    module.load_state_dict(ckpt["state_dict"], strict=True)

    use_ema = not args.no_ema and module.generator_ema is not None
    model = module.generator_ema if use_ema else module.generator
    lora = lora_options_of(model)
    if args.keep_adapters and lora is None:
        raise UsageError("--keep-adapters: the config trains no LoRA adapters (no generator_lora)")
    out.mkdir(parents=True, exist_ok=True)
    if lora is None:
        how = "full weights"
    elif args.keep_adapters:
        save_adapters(model, out)
        remove_lora(model)
        how = f"base + LoRA adapters (rank {lora.rank}) in {out / 'adapter_model.safetensors'}"
    else:
        merge_lora(model)
        how = f"LoRA (rank {lora.rank}) merged"
    model.save_pretrained(out, safe_serialization=True)
    print(f"wrote {out} ({'EMA' if use_ema else 'raw'} weights, {how}; {_size(out)})")
    return 0
