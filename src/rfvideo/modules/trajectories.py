"""Stage-1 data: deterministic ODE trajectories of the bidirectional base (CausVid / Self-Forcing's pairs).

The base model runs with full attention and classifier-free guidance through `sampling.euler_sample_cfg`;
the states at the few-step schedule's timesteps and at t = 0 are kept, the layout the ODEInitModule reads
(`trajectory (N s f c h w)`, `timesteps (s,)`).
Legend: `N` trajectories, `s` kept states, `f` latent frames, `c` channels, `h w` latent size, `n d` text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn
from tqdm import tqdm

from rfvideo.sampling import FlowMatchSchedule, euler_sample_cfg

__all__ = ["generate_trajectories", "save_trajectories", "write_trajectory_shards"]


@torch.no_grad()
def generate_trajectories(
    base_model: nn.Module,
    prompts: Sequence[str],
    embed: Callable[[list[str]], torch.Tensor],
    *,
    uncond: torch.Tensor,
    seeds: Sequence[int],
    num_latent_frames: int,
    latent_size: tuple[int, int],
    latent_channels: int,
    schedule: FlowMatchSchedule | None = None,
    num_steps: int = 50,
    guidance_scale: float = 5.0,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample one ODE trajectory per (prompt, seed) pair.

    Args:
        base_model: bidirectional generator; called as `base_model(x, t, emb, attention_mode="full")`.
        prompts: prompts, one trajectory each.
        embed: prompts -> embeddings `(b n d)`.
        uncond: unconditional embedding `(1 n d)` (negative prompt or zeros).
        seeds: one noise seed per prompt.
        num_latent_frames, latent_size, latent_channels: latent shape `(c f h w)`.
        schedule: few-step schedule whose timesteps (plus 0) are kept.
        num_steps, guidance_scale: Euler steps and CFG scale (Wan: 50, 5).
        batch_size: trajectories per model batch.

    Returns:
        `{"prompt": list[str], "seed": list[int], "trajectory": (N s f c h w) float32, "timesteps": (s,)}`.
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
    schedule = schedule or FlowMatchSchedule()
    keep = [*schedule.timesteps.tolist(), 0.0]
    param = next(base_model.parameters())
    out: list[torch.Tensor] = []
    h, w = latent_size

    def model_fn(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return base_model(x, t, c, attention_mode="full")

    was_training = base_model.training
    base_model.eval()
    for i in tqdm(range(0, len(prompts), batch_size), desc="trajectories", disable=not progress):
        ps, ss = list(prompts[i : i + batch_size]), list(seeds[i : i + batch_size])
        noise = torch.stack(
            [
                torch.randn(
                    latent_channels, num_latent_frames, h, w, generator=torch.Generator().manual_seed(s)
                )
                for s in ss
            ]
        ).to(param.device, param.dtype)  # (b c f h w)
        cond = embed(ps).to(param.device, param.dtype)
        unc = uncond.to(param.device, param.dtype).expand(len(ps), -1, -1)
        traj = euler_sample_cfg(
            model_fn, noise, cond, unc, num_steps=num_steps, shift=schedule.shift,
            guidance_scale=guidance_scale, return_timesteps=keep,
        )  # fmt: skip
        out.append(rearrange(traj.trajectory.float().cpu(), "b s c f h w -> b s f c h w"))
    base_model.train(was_training)
    return {
        "prompt": list(prompts),
        "seed": [int(s) for s in seeds],
        "trajectory": torch.cat(out),
        "timesteps": torch.tensor(keep, dtype=torch.float32),
    }


def save_trajectories(data: dict[str, Any], path: str | Path) -> Path:
    """Save as one `.pt` file (plain tensors and lists: loads with `torch.load(weights_only=True)`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def write_trajectory_shards(data: dict[str, Any], out_dir: str | Path, *, shard_size: int = 64) -> Path:
    """Write `generate_trajectories` output as `data.ShardWriter` shards (what RFVideoDataModule reads):
    one sample per trajectory with `prompt`, `trajectory (s f c h w)` and `trajectory_timesteps (s,)`.
    Samples are keyed by index, prompt and seed, so a re-run skips finished shards."""
    from rfvideo.data.shards import ShardWriter

    with ShardWriter(out_dir, shard_size=shard_size, meta={"kind": "ode_trajectories"}) as writer:
        for i, (prompt, seed) in enumerate(zip(data["prompt"], data["seed"], strict=True)):
            sample = {
                "prompt": prompt,
                "trajectory": data["trajectory"][i],
                "trajectory_timesteps": data["timesteps"],
            }
            writer.add(sample, key=f"{i}:{seed}:{prompt}")
    return Path(out_dir)
