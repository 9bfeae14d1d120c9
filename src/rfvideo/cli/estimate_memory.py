"""`rfvideo estimate-memory`: the per-GPU peak of one training step of a config, before launch.

Reads only the models' config.json files (no weights; `--preset` fills in absent folders) and allocates
nothing at real size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rfvideo.cli.errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo estimate-memory`."""
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help="experiment YAML (repeatable); default with --preset: the preset's published experiment",
    )
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


# The experiment each preset describes (repository-relative): `--preset` alone estimates it.
PRESET_CONFIGS = {"wan2.1-t2v-1.3b": "experiments/wan2.1-1.3b/reward_forcing.yaml"}
_REPO = Path(__file__).resolve().parents[3]

_NOTE = (
    "How: one fake step (FakeTensorMode + MemTracker, nothing allocated) per (full / LoRA, checkpointing),\n"
    "counted on 2 and 3 blocks and extended linearly to the full depth (the blocks are identical). Every\n"
    "(strategy, GPUs) row is arithmetic on those steps: FSDP divides weights, EMA, gradients and AdamW\n"
    "state by the GPU count and adds one gathered block; activations and the KV cache (the per-GPU batch)\n"
    "do not change. Frozen VAE, text encoder and reward: weights only. Not counted: decode and reward\n"
    "activations, allocator fragmentation, the CUDA context."
)


def _default_config(args: argparse.Namespace) -> None:
    """`--preset` alone: estimate the preset's published experiment."""
    if args.config:
        return
    if args.preset is None:
        raise UsageError("--config is required (or --preset NAME to estimate its published experiment)")
    if args.preset not in PRESET_CONFIGS:
        raise UsageError(f"--preset {args.preset!r}: unknown (known: {sorted(PRESET_CONFIGS)})")
    default = _REPO / PRESET_CONFIGS[args.preset]
    if not default.is_file():
        raise UsageError(f"--preset {args.preset!r} alone needs {PRESET_CONFIGS[args.preset]}; pass --config")
    args.config = [str(default)]


def _check_flags(args: argparse.Namespace) -> None:
    for ws in args.world_size or []:
        if ws <= 0:
            raise UsageError(f"--world-size {ws} must be > 0")
    if args.strategy is not None and args.strategy not in ("ddp", "fsdp"):
        raise UsageError(f"unknown --strategy {args.strategy!r} (use ddp or fsdp)")
    if args.lora_rank is not None and args.lora_rank <= 0:
        raise UsageError(f"--lora-rank {args.lora_rank} must be > 0")


def _preflight(args: argparse.Namespace) -> None:
    """fit's preflight, on the YAML as written, before anything is built."""
    from rfvideo.cli.preflight import estimate_problems
    from rfvideo.memory.config import load_yamls, model_sizes, read_model_config
    from rfvideo.utils.config_nodes import init_args

    cfg = load_yamls(args.config)
    gen_args = init_args(init_args(cfg.get("model")).get("generator"))
    source = "the generator's config.json"
    try:
        tcfg = read_model_config(
            gen_args["path"], gen_args.get("subfolder", "transformer"), "generator", model_sizes(args.preset),
            "transformer",
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, OSError):
        tcfg = None  # read_experiment names a missing or unreadable model config below
    problems = estimate_problems(cfg, tcfg, source)
    if problems:
        raise UsageError("; ".join(problems))


def _estimate(args: argparse.Namespace) -> tuple[list[Any], str]:
    """The estimates the flags ask for, and the config's own strategy."""
    import rfvideo.memory as memory

    _preflight(args)
    parsed = memory.read_experiment(args.config, None, args.strategy, args.preset)
    rank = args.lora_rank if args.lora_rank is not None else parsed.lora_rank
    rank = 16 if rank is None else rank
    sizes = args.world_size or ([1, 2, 8] if args.table else [parsed.world_size])
    strategies = ("ddp", "fsdp") if args.table or args.strategy is None else (args.strategy,)
    print(
        f"estimating: one fake training step per (full / LoRA rank {rank}, checkpointing) on 2 and 3 "
        "blocks, nothing allocated (up to a minute on a laptop CPU)...",
        file=sys.stderr,
        flush=True,
    )
    table = memory.estimate_table(
        args.config, world_sizes=sizes, strategies=strategies, lora_ranks=(None, rank), preset=args.preset
    )
    return table, parsed.strategy


def _print_parts(table: list[Any], strategy: str, only_config_strategy: bool) -> None:
    for est in table:
        if only_config_strategy and est.strategy != strategy:
            continue
        kind = "full fine-tune" if est.lora_rank is None else f"LoRA rank {est.lora_rank}"
        where = f"{est.strategy.upper()}, world size {est.world_size}"
        print(f"per-GPU peak of one training step: {where}, {kind}")
        for name, gib in est.rows():
            print(f"  {name:<48} {'unknown' if gib is None else f'{gib:9.2f} GiB'}")
    print()


def run(args: argparse.Namespace) -> int:
    """Print the per-part estimate for the config's strategy, then the summary table."""
    import rfvideo.memory as memory

    _default_config(args)
    _check_flags(args)
    try:
        table, strategy = _estimate(args)
    except ValueError as e:
        raise UsageError(str(e)) from e
    except (TypeError, KeyError, AttributeError) as e:  # a value of the wrong kind deep in the YAML
        raise UsageError(f"could not read the config: {type(e).__name__}: {e}") from e
    if not args.table:
        _print_parts(table, strategy, only_config_strategy=args.strategy is None)
    print("per-GPU peak of one training step (GiB):")
    print(memory.format_table(table))
    print()
    print(_NOTE)
    return 0
