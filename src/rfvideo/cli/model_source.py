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
    "chunk_size_hint",
    "frame_count_problems",
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
        p = Path(args.ckpt)
        if not p.is_file():
            problems.append(f"--ckpt: no such file: {args.ckpt!r}")
        elif p.stat().st_size == 0:
            problems.append(f"--ckpt: {args.ckpt!r} is empty (0 bytes)")
    if args.decoder is not None:
        from rfvideo.decoders.registry import DECODERS  # names only: no weights load here

        if args.decoder not in DECODERS:
            problems.append(f"--decoder: unknown decoder {args.decoder!r}; valid: {', '.join(DECODERS)}")
        if not args.decoder_path:
            problems.append(f"--decoder {args.decoder}: needs --decoder-path (its file, folder or hub id)")
    if getattr(args, "demo", False) and not (DEMO_PIPELINE / "model_index.json").is_file():
        problems.append(f"--demo: no exported demo model at {DEMO_PIPELINE}; run `make demo` first")
    return problems


def chunk_size_hint(args: argparse.Namespace) -> int | None:
    """The generator's latent frames per chunk, read from the source's text files without torch (the
    folder's `transformer/config.json`, or the config's generator `num_frames_per_chunk`); None: unknown
    before loading (a hub id, a loader default)."""
    import json

    import yaml

    try:
        if getattr(args, "model", None) or getattr(args, "demo", False):
            folder = DEMO_PIPELINE if getattr(args, "demo", False) else Path(args.model)
            config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
            return int(config["num_frames_per_chunk"])
        k = None
        for c in args.config or []:
            data = yaml.safe_load(Path(c).read_text(encoding="utf-8")) or {}
            gen = (((data.get("model") or {}).get("init_args") or {}).get("generator") or {}).get("init_args")
            if isinstance(gen, dict) and "num_frames_per_chunk" in gen:
                k = int(gen["num_frames_per_chunk"])
        return k
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None  # the loader names the problem


def frame_count_problems(num_frames: int | None, chunk: int | None, temporal_factor: int = 4) -> list[str]:
    """`--num-frames` must be `1 + 4k` pixel frames whose `k + 1` latent frames fill whole chunks (checked
    again, exactly, by the pipeline once it is loaded)."""
    if num_frames is None:
        return []
    if (num_frames - 1) % temporal_factor:
        return [f"--num-frames={num_frames}: pixel frames must be 1 + {temporal_factor}k (e.g. 81)"]
    f = 1 + (num_frames - 1) // temporal_factor
    if chunk and f % chunk:
        ok = 1 + temporal_factor * (f - f % chunk + chunk - 1)
        return [
            f"--num-frames={num_frames} is {f} latent frames, not a multiple of the generator's chunk size "
            f"{chunk} (e.g. --num-frames {ok})"
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
