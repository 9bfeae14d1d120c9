"""The demo's procedural world: coloured squares moving in named directions on a grey background.

A prompt names a colour and a direction ("a red square moving left"); `render_clip` draws the matching
clip. Everything is deterministic given the prompt and a seed, so the demo needs no data download.

Legend: `F` pixel frames, `H W` pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rfvideo.demo.world.prompt_color import COLORS

__all__ = ["DIRECTIONS", "WORLD_COLORS", "ClipSpec", "all_specs", "render_clip", "split_specs"]

# The world draws a subset of the prompt-colour reward's palette, so every prompt is scoreable by it.
WORLD_COLORS: dict[str, tuple[float, float, float]] = {
    name: COLORS[name] for name in ("red", "green", "blue", "yellow", "magenta", "cyan")
}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
BACKGROUND = (0.5, 0.5, 0.5)


@dataclass(frozen=True, kw_only=True)
class ClipSpec:
    """One prompt of the world."""

    color: str
    direction: str

    @property
    def prompt(self) -> str:
        return f"a {self.color} square moving {self.direction}"


def all_specs() -> list[ClipSpec]:
    return [ClipSpec(color=c, direction=d) for c in WORLD_COLORS for d in DIRECTIONS]


def split_specs() -> tuple[list[ClipSpec], list[ClipSpec]]:
    """(train, held-out): colour `k` (in `WORLD_COLORS` order) holds out direction `k mod 4`, a Latin-square
    split, so every colour and every direction still appears in training and only the combination is new.
    (Holding out every 4th pair of the colour-major list would hold out one direction for every colour,
    a direction the model then never hears.)"""
    dirs = list(DIRECTIONS)
    held = [ClipSpec(color=c, direction=dirs[k % len(dirs)]) for k, c in enumerate(WORLD_COLORS)]
    train = [s for s in all_specs() if s not in held]
    return train, held


def render_clip(
    spec: ClipSpec,
    *,
    num_frames: int,
    size: int,
    seed: int = 0,
    square: int | None = None,
    speed: float = 1.5,
    phase_jitter: float | None = None,
    offset_jitter: float | None = None,
    cross_frame: float | None = None,
) -> torch.Tensor:
    """Draw a clip `(F 3 H W)` in [0, 1]: the square crosses the frame centre and moves `speed` px/frame.

    By default the clip enters, crosses and leaves the centre (the world reward's composition optimum is a
    place motion passes through); `cross_frame` moves the crossing to that frame (the last frame: the
    square arrives at the centre as the clip ends). It passes the centre at `cross_frame` (default the
    middle frame) plus a uniform draw in
    `+-phase_jitter` frames, and sits a uniform draw in `+-offset_jitter` pixels off the centre line across
    its motion. `None` (the default) means the widest draws: any moment of the clip, one side length off.
    Small jitters make the prompt nearly determine the clip, which a 2-layer generator learns in minutes.
    """
    if spec.color not in WORLD_COLORS or spec.direction not in DIRECTIONS:
        raise ValueError(f"unknown colour or direction in {spec}")
    if num_frames < 1 or size < 4:
        raise ValueError(f"num_frames must be >= 1 and size >= 4, got {num_frames}, {size}")
    g = torch.Generator().manual_seed(seed)
    s = square or max(2, size // 4)
    dy, dx = DIRECTIONS[spec.direction]
    centre = (size - s) / 2  # top-left corner of a centred square
    mid = (num_frames - 1) / 2
    phase = mid if phase_jitter is None else phase_jitter
    t0 = mid if cross_frame is None else cross_frame
    t_cross = t0 + (float(torch.rand((), generator=g)) * 2 - 1) * phase
    off = (float(torch.rand((), generator=g)) * 2 - 1) * (s if offset_jitter is None else offset_jitter)
    video = torch.tensor(BACKGROUND).view(1, 3, 1, 1).repeat(num_frames, 1, size, size)
    color = torch.tensor(WORLD_COLORS[spec.color]).view(3, 1, 1)
    for i in range(num_frames):
        along = speed * (i - t_cross)
        y = centre + (dy * along if dy else off)
        x = centre + (dx * along if dx else off)
        y, x = (min(max(int(round(v)), 0), size - s) for v in (y, x))
        video[i, :, y : y + s, x : x + s] = color
    return video
