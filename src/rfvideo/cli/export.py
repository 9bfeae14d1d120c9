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
    from rfvideo.models.lora import lora_options_of, remove_lora, save_adapters
    from rfvideo.modules.pipeline_config import component_references, inference_config, pipeline_from_config

    preflight_checkpoint(args.ckpt, option="--ckpt")
    print("loading the model ...", flush=True)
    try:
        cfg = inference_config(args.config, allow_classes=args.allow_class)
        if args.keep_adapters and cfg["generator_lora"] is None:
            raise ValueError("--keep-adapters: the config trains no LoRA adapters (no generator_lora)")
        pipe = pipeline_from_config(
            args.config,
            args.ckpt,
            use_ema=not args.no_ema,
            allow_classes=args.allow_class,
            merge_lora=not args.keep_adapters,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    weights = "raw" if args.no_ema else "EMA"
    lora = cfg["generator_lora"]
    if args.keep_adapters:
        model = pipe.transformer
        rank = lora_options_of(model).rank
        out.mkdir(parents=True, exist_ok=True)
        save_adapters(model, out)
        remove_lora(model)
        model.save_pretrained(out, safe_serialization=True)
        where = out / "adapter_model.safetensors"
        print(f"wrote {out} ({weights} weights, base + LoRA adapters (rank {rank}) in {where}; {_size(out)})")
        return 0
    refs = {} if args.copy_all else component_references(cfg)
    print(f"writing {out} ...", flush=True)
    try:
        pipe.save_pretrained(out, references=refs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    how = "full weights" if lora is None else f"LoRA (rank {lora['rank']}) merged"
    shared = f"references {sorted(refs)}" if refs else "every component copied"
    print(f"wrote pipeline folder {out} ({weights} weights, {how}; {shared}; {_size(out)})")
    return 0
