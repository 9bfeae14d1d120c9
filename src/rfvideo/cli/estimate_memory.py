"""`rfvideo estimate-memory`: the per-GPU peak of one training step of a config, before launch.

Reads only the models' config.json files (no weights) and allocates nothing at real size.
"""

from __future__ import annotations

import argparse

from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo estimate-memory`."""
    parser.add_argument("--config", action="append", required=True, help="experiment YAML (repeatable)")
    parser.add_argument(
        "--world-size", type=int, nargs="+", default=None, help="GPUs (default: the trainer's devices)"
    )
    parser.add_argument("--strategy", default=None, help="ddp or fsdp (default: the config's strategy)")


def run(args: argparse.Namespace) -> int:
    """Print the estimate table; a bad config, world size or strategy is a UsageError naming it."""
    from rfvideo.memory import estimate_from_config

    sizes = args.world_size or [None]
    for ws in sizes:
        if ws is not None and ws <= 0:
            raise UsageError(f"--world-size {ws} must be > 0")
    if args.strategy is not None and args.strategy not in ("ddp", "fsdp"):
        raise UsageError(f"unknown --strategy {args.strategy!r} (use ddp or fsdp)")
    for ws in sizes:
        try:
            est = estimate_from_config(args.config, world_size=ws, strategy=args.strategy)
        except ValueError as e:
            raise UsageError(str(e)) from e
        print(f"per-GPU peak of one training step: {est.strategy.upper()}, world size {est.world_size}")
        for name, gib in est.rows():
            print(f"  {name:<48} {'unknown' if gib is None else f'{gib:9.2f} GiB'}")
        print("  (LoRA: no generator_lora option exists yet; full fine-tuning only)")
    return 0
