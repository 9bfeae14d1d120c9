"""prompts -> mp4 files with a trained module (the config it was trained with, optionally a checkpoint)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rfvideo.cli.argtypes import nonnegative_int, positive_int

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo generate`."""
    parser.add_argument("--config", required=True, help="the experiment YAML the checkpoint was trained with")
    parser.add_argument(
        "--ckpt", default=None, help="Lightning checkpoint (generator + EMA); default: config's weights"
    )
    parser.add_argument("--prompt", action="append", required=True, help="repeat for several videos")
    parser.add_argument(
        "--num-frames", type=positive_int, default=None, help="latent frames (multiple of the chunk size)"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--no-ema", action="store_true")
    parser.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    """Build the module from the config, load the checkpoint, write one mp4 per prompt."""
    from rfvideo.cli.lightning import build_module, load_module_checkpoint
    from rfvideo.cli.preflight import preflight_checkpoint
    from rfvideo.data.video_io import write_video

    if args.ckpt:
        preflight_checkpoint(args.ckpt, option="--ckpt")
    # The requested length goes through the config, so preflight checks it (chunk multiple, RoPE
    # length) before the weights load.
    overrides = [] if args.num_frames is None else [f"--model.init_args.num_latent_frames={args.num_frames}"]
    module = build_module([args.config], overrides)
    if args.ckpt:
        load_module_checkpoint(module, args.ckpt)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(args.prompt):
        video = module.generate(
            [prompt], seeds=[args.seed + i], num_latent_frames=args.num_frames, use_ema=not args.no_ema
        )
        path = out / f"{i:03d}.mp4"
        write_video(path, video[0])
        print(f"wrote {path}  ({prompt!r})")
    return 0
