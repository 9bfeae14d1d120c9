"""Where the inference commands (`generate`, `sample`, `serve`, `export`) get their model: one set of
options and one loader, so every command accepts the same sources.

    --model DIR | HUB_ID          an exported pipeline folder (`rfvideo export`, `make demo`) or a hub id
    --config X.yaml [--ckpt F]    a training config and its checkpoint (Lightning `last.ckpt`, or an original
                                  Self-Forcing / CausVid / Wan generator file): only the generator, VAE and
                                  text encoder are built (no reward models, no data, no Trainer)
    --demo                        the model `make demo` exported (`outputs/demo/pipeline`)

Shared options: `--no-ema`, `--device`, `--allow-class`, `--preset`. Every check that needs no torch runs
before torch is imported.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rfvideo.cli.errors import UsageError

__all__ = [
    "DEMO_PIPELINE",
    "add_model_arguments",
    "check_model_arguments",
    "frame_count_problems",
    "transformer_config_hint",
    "load_pipeline",
]

#: Where `python -m rfvideo.demo` exports its stage-2 model as a pipeline folder.
DEMO_PIPELINE = Path("outputs/demo/pipeline")


def add_model_arguments(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    """`--model | --config [--ckpt] [| --demo]` and the shared inference options."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="pipeline folder (rfvideo export / make demo) or hub id")
    src.add_argument("--config", action="append", help="training YAML (repeatable; with --ckpt)")
    if demo:
        src.add_argument(
            "--demo", action="store_true", help=f"the model make demo exported ({DEMO_PIPELINE})"
        )
    parser.add_argument(
        "--ckpt",
        default=None,
        help="with --config: Lightning checkpoint (last.ckpt) or an original Self-Forcing / CausVid .pt "
        "(default: the config's own weights)",
    )
    parser.add_argument("--no-ema", action="store_true", help="with --ckpt: the raw weights, not the EMA")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument(
        "--allow-class",
        action="append",
        default=[],
        metavar="MODULE.CLASS",
        help="also allow this component class in the folder / config (only for code you trust)",
    )
    parser.add_argument(
        "--preset", default=None, help="inference preset for a peer's checkpoint (rfvideo.pipeline.presets)"
    )
    parser.add_argument(
        "--decoder",
        default=None,
        help="replace the VAE: wan | tae | lighttae | lightvae (rfvideo.decoders; with --decoder-path)",
    )
    parser.add_argument("--decoder-path", default=None, help="the decoder's file, folder or hub id")
    parser.add_argument("--decoder-file", default=None, help="the weights file inside --decoder-path")


def check_model_arguments(args: argparse.Namespace) -> list[str]:
    """Problems found without torch (missing files, options that do not combine), one per entry."""
    problems = []
    if getattr(args, "ckpt", None) and not args.config:
        problems.append("--ckpt: needs --config (a pipeline folder holds its weights)")
    for c in args.config or []:
        if not Path(c).is_file():
            problems.append(f"--config: no such file: {c!r}")
    if args.ckpt:
        from rfvideo.cli.preflight import preflight_checkpoint  # reads the zip directory only, no torch

        try:
            preflight_checkpoint(args.ckpt, option="--ckpt")
        except UsageError as e:
            problems.append(str(e))
    if args.decoder is not None:
        from rfvideo.decoders.registry import DECODERS  # names only: no weights load here

        if args.decoder not in DECODERS:
            problems.append(f"--decoder: unknown decoder {args.decoder!r}; valid: {', '.join(DECODERS)}")
        if not args.decoder_path:
            problems.append(f"--decoder {args.decoder}: needs --decoder-path (its file, folder or hub id)")
    if getattr(args, "demo", False) and not (DEMO_PIPELINE / "model_index.json").is_file():
        problems.append(f"--demo: no exported demo model at {DEMO_PIPELINE}; run `make demo` first")
    return problems


def transformer_config_hint(args: argparse.Namespace) -> tuple[dict[str, Any], str] | None:
    """The generator's causal config read from the source's text files before anything loads: the folder's
    `transformer/config.json`, or the config's `load_causal_wan` folder's `config.json` with the YAML's causal
    options over it, or the YAML's options alone; None when nothing is readable (a hub id: the loader checks).

    Returns:
        `(config, where it came from)`.
    """
    import json

    import yaml

    try:
        if getattr(args, "model", None) or getattr(args, "demo", False):
            folder = DEMO_PIPELINE if getattr(args, "demo", False) else Path(args.model)
            file = folder / "transformer" / "config.json"
            return json.loads(file.read_text(encoding="utf-8")), str(file)
        gen: dict[str, Any] = {}
        for c in args.config or []:
            data = yaml.safe_load(Path(c).read_text(encoding="utf-8")) or {}
            spec = ((data.get("model") or {}).get("init_args") or {}).get("generator") or {}
            gen |= spec.get("init_args") or {}
        config: dict[str, Any] = {}
        source = "the config's generator"
        if isinstance(gen.get("path"), str):
            file = (
                Path(gen["path"]).expanduser() / (gen.get("subfolder", "transformer") or "") / "config.json"
            )
            if file.is_file():
                config, source = json.loads(file.read_text(encoding="utf-8")), str(file)
        return (config | gen, source) if config or gen else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None  # the loader names the problem


def frame_count_problems(
    args: argparse.Namespace, num_frames: int | None, temporal_factor: int = 4
) -> list[str]:
    """`--num-frames` must be `1 + 4k` pixel frames whose `k + 1` latent frames fill whole chunks and fit
    the RoPE table (checked again, exactly, by the pipeline once it is loaded)."""
    if num_frames is None:
        return []
    if (num_frames - 1) % temporal_factor:
        return [f"--num-frames={num_frames}: pixel frames must be 1 + {temporal_factor}k (e.g. 81)"]
    found = transformer_config_hint(args)
    if found is None:
        return []
    config, source = found
    from rfvideo.models.causal_options import CausalOptions

    try:
        opts = CausalOptions.from_config(config)
    except ValueError:
        return []  # the loader reports bad causal options with its own message
    f = 1 + (num_frames - 1) // temporal_factor
    k = opts.num_frames_per_chunk
    if f % k:
        ok = 1 + temporal_factor * (f - f % k + k - 1)
        return [
            f"--num-frames={num_frames} is {f} latent frames, not a multiple of the generator's chunk size "
            f"{k} (e.g. --num-frames {ok})"
        ]
    needed, table = opts.rope_frames_needed(f), int(config.get("rope_max_seq_len", 1024))
    if needed is not None and needed > table:
        return [
            f"--num-frames={num_frames} ({f} latent frames) needs {needed} RoPE positions but {source} has "
            f"rope_max_seq_len={table} (a rolling window with rope_mode='relative' needs only the window)"
        ]
    return []


def load_pipeline(args: argparse.Namespace) -> Any:
    """The `RFVideoPipeline` the options name, on `--device`, with its load time in `load_seconds`.

    Raises:
        UsageError: any problem of the source, one line each (several joined by newlines).
    """
    problems = check_model_arguments(args)
    if problems:
        raise UsageError("\n".join(problems))
    from rfvideo.cli.devices import resolve_device

    device = resolve_device(args.device)
    print("loading the model ...", flush=True)
    try:
        if args.config:
            from rfvideo.modules.pipeline_config import pipeline_from_config

            pipe = pipeline_from_config(
                args.config, args.ckpt, use_ema=not args.no_ema, allow_classes=args.allow_class
            )
            if args.preset:
                pipe.apply_preset(args.preset)
            pipe.to(device)
        else:
            from rfvideo.pipeline import RFVideoPipeline

            source = DEMO_PIPELINE if getattr(args, "demo", False) else args.model
            pipe = RFVideoPipeline.from_pretrained(
                source, device=device, allow_classes=args.allow_class, preset=args.preset
            )
        if args.decoder is not None:
            from rfvideo.decoders import build_decoder

            kw = {"filename": args.decoder_file} if args.decoder_file else {}
            pipe.set_decoder(build_decoder(args.decoder, args.decoder_path, device=pipe.device, **kw))
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"loaded in {pipe.load_seconds:.1f} s", flush=True)
    return pipe
