"""Stage-1 data: ODE trajectories of the bidirectional Wan base (full attention, CFG) into shards."""

from __future__ import annotations

import argparse

from rfvideo.cli.argtypes import nonnegative_int, positive_float, positive_int

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rfvideo trajectories`."""
    parser.add_argument(
        "--wan", required=True, help="Wan2.1 diffusers folder (transformer/, text_encoder/, tokenizer/)"
    )
    parser.add_argument("--prompts", required=True, help="prompt file (.txt/.jsonl/.csv)")
    parser.add_argument("--out", required=True, help="shard directory")
    parser.add_argument("--num-latent-frames", type=positive_int, default=21, help="latent frames per clip")
    parser.add_argument(
        "--latent-size", type=positive_int, nargs=2, default=(60, 104), help="latent height and width"
    )
    parser.add_argument("--steps", type=positive_int, default=50, help="Euler steps of the base model")
    parser.add_argument("--guidance", type=positive_float, default=5.0, help="classifier-free guidance scale")
    parser.add_argument("--negative-prompt", default="", help="the unconditional prompt of the guidance")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="noise seed")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="prompts per forward")
    parser.add_argument("--dtype", default="bfloat16", help="weights dtype of the base model")
    parser.add_argument("--device", default="auto", help="cuda, cpu, ... (auto: cuda when available)")


def run(args: argparse.Namespace) -> int:
    """Load the base and the text encoder, sample the trajectories, write the shards."""
    import torch

    from rfvideo.cli.devices import resolve_device
    from rfvideo.data.prompts import load_prompts
    from rfvideo.modules.components import load_causal_wan, load_text_encoder
    from rfvideo.modules.trajectories import generate_trajectories, write_trajectory_shards

    device = resolve_device(args.device)
    prompts = load_prompts(args.prompts).prompts  # before the weights: a bad file fails in seconds
    base = load_causal_wan(args.wan, dtype=args.dtype).to(device).eval()
    text = load_text_encoder(args.wan, dtype=args.dtype).to(device)

    def embed(batch: list[str]) -> torch.Tensor:
        emb, mask = text.encode(batch)
        return emb * mask.unsqueeze(-1).to(emb.dtype)

    uncond = embed([args.negative_prompt]) if args.negative_prompt.strip() else embed(["."]) * 0
    data = generate_trajectories(
        base, prompts, embed, uncond=uncond, seeds=[args.seed + i for i in range(len(prompts))],
        num_latent_frames=args.num_latent_frames, latent_size=tuple(args.latent_size),
        latent_channels=int(base.config.in_channels), num_steps=args.steps, guidance_scale=args.guidance,
        batch_size=args.batch_size,
    )  # fmt: skip
    print(f"wrote {len(prompts)} trajectories to {write_trajectory_shards(data, args.out)}")
    return 0
