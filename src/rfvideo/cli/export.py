"""`rfvideo export`: a training checkpoint -> a pipeline folder that `RFVideoPipeline.from_pretrained(DIR)`,
`rfvideo generate --model DIR` and `rfvideo serve --model DIR` load (`model_index.json`, `transformer/`,
`vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`; safetensors with SHA-256 digests in the index).

The config builds the generator, VAE and text encoder only (`rfvideo.modules.pipeline_config`; no reward
models, no data), the checkpoint's generator loads strictly on top, and the EMA weights are exported
unless `--no-ema`. A LoRA run's adapters are merged into the base (`W + (alpha / r) B A`). Components the
config loads from a Wan diffusers folder or hub id (VAE, umT5 and its tokenizer) are written as references
to it, not copied (`--copy-all` copies them); `transformer/` is diffusers' own layout, so
`WanTransformer3DModel.from_pretrained(DIR, subfolder="transformer")` reads its weights too.

`--keep-adapters` (LoRA runs) writes the transformer alone instead, the unmerged base plus peft's
`adapter_model.safetensors` + `adapter_config.json` (`rfvideo.models.lora.load_adapters` puts them back).
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
    parser.add_argument(
        "--copy-all", action="store_true", help="copy the VAE and text encoder instead of referencing them"
    )
    parser.add_argument(
        "--allow-class",
        action="append",
        default=[],
        metavar="MODULE.CLASS",
        help="also allow this class_path",
    )


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
    total = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return f"{total / 2**20:.1f} MiB"


def run(args: argparse.Namespace) -> int:
    """Build the config's module, load the checkpoint, write the chosen generator to `--out`."""
    for c in args.config:
        if not Path(c).is_file():
            raise UsageError(f"--config: no such file: {c}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out: {str(out)!r} exists and is not an empty folder")

    from rfvideo.cli.preflight import preflight_checkpoint

    preflight_checkpoint(args.ckpt, option="--ckpt")
    if not args.keep_adapters:
        from rfvideo.modules.pipeline_config import (
            component_references,
            inference_config,
            pipeline_from_config,
        )

        print("loading the model ...", flush=True)
        try:
            pipe = pipeline_from_config(
                args.config, args.ckpt, use_ema=not args.no_ema, allow_classes=args.allow_class
            )
            refs = {} if args.copy_all else component_references(inference_config(args.config))
            print(f"writing {out} ...", flush=True)
            pipe.save_pretrained(out, references=refs)
        except ValueError as e:
            raise UsageError(str(e)) from None
        how = f"references {sorted(refs)}" if refs else "every component copied"
        print(f"wrote pipeline folder {out} ({'raw' if args.no_ema else 'EMA'} weights; {how}; {_size(out)})")
        return 0
    from rfvideo.cli.lightning import build_module
    from rfvideo.models.lora import lora_options_of, merge_lora, remove_lora, save_adapters
    from rfvideo.utils.checkpoint import load_checkpoint

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
