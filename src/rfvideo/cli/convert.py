"""`rfvideo convert`: a peer's released generator file -> a diffusers generator folder that runs as the peer's
own inference runs it.

    rfvideo convert self_forcing_dmd.pt out/ --from self-forcing
    rfvideo convert longlive_base.pt out/ --from longlive --lora lora.pt [--keep-adapters]
    rfvideo convert rewardforcing.pt out/ --from reward-forcing-lu
    rfvideo convert ode_pairs/ shards/ --from self-forcing-pairs [--labelling self-forcing|exact]

The weights are mapped strictly (every key used, none left over) onto `CausalWanTransformer`, built with the
preset's causal options (default: the peer's own preset, `rfvideo.pipeline.presets`), and written as a
diffusers folder (`config.json` + safetensors, loadable by `CausalWanTransformer.from_pretrained(OUT)`) with
`rfvideo_preset.json` naming the preset (its schedule and context timestep). LongLive's LoRA is merged
(`W + (alpha / r) B A`) unless `--keep-adapters` writes it beside the base as peft's adapter files.

`--from self-forcing-pairs` converts a folder of Self-Forcing's ODE-pair files into stage-1 shards
(`RFVideoDataModule(train_shards=OUT)`), labelled as `--labelling` says (`rfvideo.data.self_forcing_pairs`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rfvideo.cli.argtypes import positive_float, positive_int
from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run", "write_output"]

PEERS = ("self-forcing", "causvid", "longlive", "reward-forcing-lu")  # == rfvideo.models.convert.PEERS
PAIRS = "self-forcing-pairs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo convert`."""
    parser.add_argument("input", help="the peer's generator file (.pt / .safetensors), or a pair folder")
    parser.add_argument("output", help="output folder (new or empty)")
    parser.add_argument(
        "--from", dest="peer", required=True, choices=(*PEERS, PAIRS), help="whose file it is"
    )
    parser.add_argument(
        "--preset", default=None, help="inference preset to write with it (default: the peer's own)"
    )
    parser.add_argument(
        "--wan",
        default=None,
        help="a Wan2.1 diffusers folder or hub id: write a pipeline folder (RFVideoPipeline.from_pretrained, "
        "rfvideo generate --model) referencing its VAE and umT5; without it the transformer folder alone",
    )
    parser.add_argument("--lora", default=None, help="LongLive: its LoRA file (lora.pt)")
    parser.add_argument(
        "--lora-alpha", type=positive_float, default=None,
        help="LoRA alpha (default: the rank; LongLive's configs set alpha = rank = 256)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-adapters", action="store_true", help="write the LoRA as peft adapter files, unmerged"
    )
    parser.add_argument(
        "--key", default=None,
        help="sub-dict of the file (default: generator_ema for self-forcing, generator for the others)",
    )  # fmt: skip
    parser.add_argument(
        "--attention-head-dim", type=positive_int, default=128, help="head width (Wan2.1: 128)"
    )
    parser.add_argument(
        "--labelling", choices=("self-forcing", "exact"), default="self-forcing",
        help="self-forcing-pairs: timesteps the states carry (Self-Forcing's labels, or their true sigma)",
    )  # fmt: skip


def write_output(model: Any, out: Path, *, preset: str, wan: str | None = None) -> None:
    """Write the converted generator (the one place that decides the folder layout): with `wan`, a pipeline
    folder (the transformer with the preset's causal options, the preset's schedule as its scheduler, the
    VAE / umT5 / tokenizer referenced in `wan`); without, the transformer folder and its preset's name."""
    import json

    from rfvideo.pipeline.presets import PRESET_FILE, get_preset

    p = get_preset(preset)
    if wan is not None:
        from rfvideo.pipeline import FewStepFlowScheduler
        from rfvideo.pipeline.folder import save_converted

        save_converted(model, FewStepFlowScheduler.from_schedule(p.flow_schedule()), out, wan=wan)
        return
    model.save_pretrained(out, safe_serialization=True)
    info = {
        "preset": p.name,
        "schedule": {k: list(v) if isinstance(v, tuple) else v for k, v in p.schedule.items()},
        "context_timestep": p.context_timestep,
    }
    (out / PRESET_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _convert_pairs(args: argparse.Namespace) -> int:
    """Self-Forcing's ODE-pair folder -> stage-1 shards."""
    src, out = Path(args.input), Path(args.output)
    if not src.is_dir():
        raise UsageError(f"input: {args.input!r} is not a folder of Self-Forcing pair files")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output: {str(out)!r} exists and is not an empty folder")
    from rfvideo.data.self_forcing_pairs import write_self_forcing_pair_shards

    try:
        write_self_forcing_pair_shards(src, out, labelling=args.labelling)
    except ValueError as e:
        raise UsageError(f"{args.input}: {e}") from e
    print(f"wrote stage-1 shards of {src} to {out} (labelling {args.labelling!r})")
    return 0


def run(args: argparse.Namespace) -> int:
    """Map the peer's weights, build the model with the preset's options, write the folder."""
    if args.peer == PAIRS:
        return _convert_pairs(args)
    src, out = Path(args.input), Path(args.output)
    preset_name = _check_arguments(args, src, out)
    from rfvideo.models import CausalOptions, CausalWanTransformer
    from rfvideo.models.convert import check_keys, infer_wan_config, load_peer_checkpoint, merge_lora_weights
    from rfvideo.pipeline.presets import get_preset

    try:
        sd, lora = load_peer_checkpoint(src, args.peer, key=args.key, lora=args.lora)
        config = infer_wan_config(sd, attention_head_dim=args.attention_head_dim)
    except ValueError as e:
        raise UsageError(f"{args.input}: {e}") from e
    preset = get_preset(preset_name)
    chunk = preset.num_frames_per_chunk or get_preset(args.peer).num_frames_per_chunk or 3
    options = preset.causal_options(CausalOptions(num_frames_per_chunk=chunk))
    rank = None if lora is None else next(iter(lora.values()))[0].shape[0]
    alpha = float(args.lora_alpha) if args.lora_alpha is not None else rank
    if lora is not None and not args.keep_adapters:
        sd = merge_lora_weights(sd, lora, alpha=alpha)
    # float32 (a bf16 release converts losslessly; `from_pretrained(torch_dtype=...)` casts on load)
    model = CausalWanTransformer.from_options(options, **config)
    try:
        check_keys(sd, model)
    except ValueError as e:
        raise UsageError(f"{args.input}: {e}") from e
    model.load_state_dict(sd, strict=True)
    out.mkdir(parents=True, exist_ok=True)
    how = "full weights"
    if lora is not None and args.keep_adapters:
        _save_adapters(model, lora, rank=int(rank), alpha=alpha, out=out)
        how = f"base + LoRA adapters (rank {rank}, alpha {alpha:g}) unmerged"
    elif lora is not None:
        how = f"LoRA (rank {rank}, alpha {alpha:g}) merged"
    try:
        write_output(model, out, preset=preset_name, wan=args.wan)
    except ValueError as e:
        raise UsageError(str(e)) from None
    kind = "pipeline folder" if args.wan else "transformer folder"
    print(f"wrote {kind} {out} ({args.peer} {how}; preset {preset_name!r})")
    return 0


def _check_arguments(args: argparse.Namespace, src: Path, out: Path) -> str:
    """One-line errors for the command line, before any weights are read; the preset's name."""
    if not src.is_file():
        raise UsageError(f"input: no such file: {args.input}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output: {str(out)!r} exists and is not an empty folder")
    if args.lora is not None and args.peer != "longlive":
        raise UsageError(f"--lora: only LongLive releases a LoRA file, not {args.peer!r}")
    if args.lora is not None and not Path(args.lora).is_file():
        raise UsageError(f"--lora: no such file: {args.lora}")
    if (args.keep_adapters or args.lora_alpha is not None) and args.lora is None:
        raise UsageError("--keep-adapters / --lora-alpha need --lora")
    if args.wan is not None and args.keep_adapters:
        raise UsageError("--keep-adapters writes the transformer alone: drop --wan (or merge the LoRA)")
    from rfvideo.pipeline.presets import preset_names

    preset_name = args.preset or args.peer
    if preset_name not in preset_names():
        raise UsageError(f"--preset: unknown preset {preset_name!r}; valid: {', '.join(preset_names())}")
    return preset_name


def _save_adapters(model: Any, lora: dict[str, Any], *, rank: int, alpha: float, out: Path) -> None:
    """Write the peer's LoRA factors as rfvideo adapters beside the (unmerged) base, then detach them."""
    import torch

    from rfvideo.models.lora import LoraOptions, apply_lora, remove_lora, save_adapters

    apply_lora(model, LoraOptions(rank=rank, alpha=alpha))
    with torch.no_grad():
        for name, (a, b) in lora.items():
            layer = model.get_submodule(name)
            layer.lora_A["default"].weight.copy_(a)
            layer.lora_B["default"].weight.copy_(b)
    save_adapters(model, out)
    remove_lora(model)
