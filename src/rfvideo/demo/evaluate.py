"""Held-out evaluation of one model, and the picture grid.

Metrics on the held-out prompts (unseen colour x direction pairs), each the mean over prompts and
evaluation seeds:
  reward_last / reward_all   the world's reward on the last frame / on all frames
  colour_last                prompt colour match of the last frame's foreground (no size, no position)
  shape                      IoU of the foreground with its best-fitting square, mean over frames
  motion                     foreground centroid speed, pixels/frame (the clips: their `speed`)
  direction                  share of videos whose square moves the prompt's way (`direction_match`)
  area                       foreground fraction of the last frame (the world's square: 1/16)

Legend: `b` videos, `F` pixel frames, `H W` pixel size, `P` prompts in the grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rfvideo.demo.stages import World, world_reward
from rfvideo.demo.world.metrics import direction_match, foreground, motion, shape_score
from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.demo.world.world import DIRECTIONS, render_clip
from rfvideo.pipeline import RFVideoPipeline

__all__ = ["METRICS", "clip_videos", "evaluate_videos", "grid_tensor", "labelled_grid", "save_grid"]

METRICS = ("reward_last", "reward_all", "colour_last", "shape", "motion", "direction", "area")


@torch.no_grad()
def evaluate_videos(world: World, videos: torch.Tensor, prompts: list[str]) -> dict[str, float]:
    """The metrics of `videos (b F 3 H W)` against their prompts (means over the batch)."""
    reward, colour = world_reward(world.settings), PromptColorReward()
    return {
        "reward_last": float(reward(videos[:, -1:], prompts).mean()),
        "reward_all": float(reward(videos, prompts).mean()),
        "colour_last": float(colour(videos[:, -1:], prompts).mean()),
        "shape": float(shape_score(videos.flatten(0, 1)).mean()),
        "motion": float(motion(videos).mean()),
        "direction": float(direction_match(videos, [DIRECTIONS[p.split()[-1]] for p in prompts]).mean()),
        "area": float(foreground(videos[:, -1]).float().mean()),
    }


@torch.no_grad()
def evaluate_model(world: World, module: Any) -> tuple[dict[str, float], torch.Tensor]:
    """Mean metrics over `eval_seeds` seeds of every held-out prompt, and the first seed's videos."""
    prompts = [s.prompt for s in world.held_specs]
    pipe = RFVideoPipeline.from_module(module)  # the EMA generator, at the training length and size
    per_seed, first = [], None
    for k in range(world.settings.eval_seeds):
        gens = [torch.Generator().manual_seed(1000 + k) for _ in prompts]
        video = pipe(prompts, generator=gens, output_type="pt", progress=False).frames  # (b F 3 H W)
        per_seed.append(evaluate_videos(world, video, prompts))
        first = video if first is None else first
    assert first is not None
    return {m: sum(r[m] for r in per_seed) / len(per_seed) for m in METRICS}, first


def clip_videos(world: World) -> torch.Tensor:
    """The world's own clips of the held-out prompts `(b F 3 H W)` (fixed seeds)."""
    s = world.settings
    return torch.stack(
        [render_clip(sp, seed=7 + k, **s.clip_kwargs()) for k, sp in enumerate(world.held_specs)]
    )


def grid_tensor(rows: dict[str, torch.Tensor], prompt_ids: list[int], *, scale: int = 3) -> torch.Tensor:
    """`(3 H' W')` picture: for each prompt a block of one row per model, one column per frame."""
    blocks = []
    for p in prompt_ids:
        lines = []
        for video in rows.values():
            frames = video[p]  # (F 3 H W)
            pad = torch.ones(frames.shape[0], 3, frames.shape[2], 2)  # white gutter between frames
            lines.append(torch.cat(list(torch.cat([frames, pad], -1)), -1))  # (3 H F(W+2))
            lines.append(torch.ones(3, 2, lines[-1].shape[-1]))
        blocks.append(torch.cat(lines, 1))
        blocks.append(torch.ones(3, 8, blocks[-1].shape[-1]))
    img = torch.cat(blocks[:-1], 1)
    return img.repeat_interleave(scale, 1).repeat_interleave(scale, 2).clamp(0, 1)


def labelled_grid(
    rows: dict[str, torch.Tensor], prompt_ids: list[int], prompts: list[str] | None = None, *, scale: int = 3
) -> torch.Tensor:
    """`grid_tensor` with the row names drawn at the left of each row and, given `prompts`, each block's
    prompt above it (a picture that explains itself in TensorBoard or a README). Returns `(3 H'' W'')`."""
    from PIL import Image, ImageDraw

    img = grid_tensor(rows, prompt_ids, scale=scale)
    _, h, w = img.shape
    row_h = (rows[next(iter(rows))].shape[-2] + 2) * scale  # one video row and its gutter
    block_h = row_h * len(rows) + 8 * scale
    title_h = 14 if prompts is not None else 0
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = int(max(probe.textlength(n) for n in rows)) + 12  # the widest row name and a gutter
    arr = (img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    canvas = Image.new("RGB", (w + margin, h + title_h * len(prompt_ids)), "white")
    draw = ImageDraw.Draw(canvas)
    for b, p in enumerate(prompt_ids):
        top = b * (block_h + title_h)
        src = Image.fromarray(arr[b * block_h : min(h, b * block_h + block_h - 8 * scale)])
        canvas.paste(src, (margin, top + title_h))
        if prompts is not None:
            draw.text((margin, top + 1), f"held-out prompt: {prompts[p]!r}", fill="black")
        for r, name in enumerate(rows):
            draw.text((4, top + title_h + r * row_h + row_h // 2 - 6), name, fill="black")
    out = torch.from_numpy(__import__("numpy").asarray(canvas).copy()).permute(2, 0, 1)
    return out.float() / 255


def save_grid(
    path: Path, rows: dict[str, torch.Tensor], prompt_ids: list[int], prompts: list[str] | None = None
) -> torch.Tensor:
    """Write the labelled grid as a PNG; returns it `(3 H' W')` (for TensorBoard)."""
    from PIL import Image

    img = labelled_grid(rows, prompt_ids, prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = (img.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(arr).save(path)
    return img
