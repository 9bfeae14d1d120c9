"""`rfvideo estimate-memory`: the per-GPU peak of one training step of a config, before launch.

Reads only the models' config.json files (no weights; `--preset` fills in absent folders) and allocates
nothing at real size.
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
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=None,
        help="LoRA rank (default: the config's generator_lora, else 16)",
    )
    parser.add_argument(
        "--preset", default=None, help="published model configs for absent model folders (wan2.1-t2v-1.3b)"
    )
    parser.add_argument(
        "--table", action="store_true",
        help="only the summary table: DDP and FSDP on 1, 2, 8 GPUs (or --world-size), full and LoRA",
    )  # fmt: skip


_NOTE = (
    "How: one fake step (FakeTensorMode + MemTracker, nothing allocated) per (full / LoRA, checkpointing),\n"
    "counted on 2 and 3 blocks and extended linearly to the full depth (the blocks are identical). Every\n"
    "(strategy, GPUs) row is arithmetic on those steps: FSDP divides weights, EMA, gradients and AdamW\n"
    "state by the GPU count and adds one gathered block; activations and the KV cache (the per-GPU batch)\n"
    "do not change. Frozen VAE, text encoder and reward: weights only. Not counted: decode and reward\n"
    "activations, allocator fragmentation, the CUDA context."
)


def run(args: argparse.Namespace) -> int:
    """Print the per-part estimate for the config's strategy, then the summary table."""
    from rfvideo.memory import estimate_table, format_table
    from rfvideo.memory.estimate import _parse

    for ws in args.world_size or []:
        if ws <= 0:
            raise UsageError(f"--world-size {ws} must be > 0")
    if args.strategy is not None and args.strategy not in ("ddp", "fsdp"):
        raise UsageError(f"unknown --strategy {args.strategy!r} (use ddp or fsdp)")
    if args.lora_rank is not None and args.lora_rank <= 0:
        raise UsageError(f"--lora-rank {args.lora_rank} must be > 0")
    try:
        parsed = _parse(args.config, None, args.strategy, args.preset)
        rank = args.lora_rank or parsed.lora_rank or 16
        sizes = args.world_size or ([1, 2, 8] if args.table else [parsed.world_size])
        strategies = ("ddp", "fsdp") if args.table or args.strategy is None else (args.strategy,)
        table = estimate_table(
            args.config, world_sizes=sizes, strategies=strategies, lora_ranks=(None, rank), preset=args.preset
        )
    except ValueError as e:
        raise UsageError(str(e)) from e
    if not args.table:
        for est in table:
            if est.strategy != parsed.strategy and args.strategy is None:
                continue
            kind = "full fine-tune" if est.lora_rank is None else f"LoRA rank {est.lora_rank}"
            where = f"{est.strategy.upper()}, world size {est.world_size}"
            print(f"per-GPU peak of one training step: {where}, {kind}")
            for name, gib in est.rows():
                print(f"  {name:<48} {'unknown' if gib is None else f'{gib:9.2f} GiB'}")
        print()
    print("per-GPU peak of one training step (GiB):")
    print(format_table(table))
    print()
    print(_NOTE)
    return 0
