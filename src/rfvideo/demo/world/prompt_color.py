"""Weight-free, differentiable demo reward: does the clip show the colour that the prompt names?

For each frame, a soft mask picks the pixels that are "coloured" (far from the background grey in RGB); the
reward is the mean over those pixels of `exp(-||rgb - target||^2 / (2 tau^2))`, the target being the
RGB of the first colour word found in the prompt. Prompts that name no known colour get reward 0
(with a gradient of 0). Everything is a smooth function of the video, so the reward backpropagates.

That colour match is a ratio over the foreground, so painting the whole frame in the prompt's colour
maximises it (reward hacking). With `target_area` set (the demo uses 1/16, the world's square), it is
multiplied by a size term `min(A, A0) / max(A, A0)`, `A` the mean foreground mask of the frame and `A0 =
target_area`: 1 for a square of the world's size, lower for a frame that is over- or under-painted.

Legend: `b` batch, `f` frames, `H W` pixel size.
"""

from __future__ import annotations

import re

import torch

from rfvideo.rewards.base import FrameReward

__all__ = ["COLORS", "PromptColorReward", "prompt_color"]

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
}


def prompt_color(prompt: str) -> str | None:
    """The first known colour word in `prompt` (case-insensitive), else None."""
    for word in re.findall(r"[a-z]+", prompt.lower()):
        if word in COLORS:
            return word
    return None


class PromptColorReward(FrameReward):
    """`reward(video (b f 3 H W) in [0,1], prompts) -> (b,)` in [0, 1]: colour match of the foreground.

    Args:
        background: RGB of the background; pixels near it are not "foreground".
        tau: colour tolerance (RGB distance) of the match kernel.
        mask_tau: softness of the foreground mask (distance to the background).
        target_area: expected foreground fraction of a frame; None (default) scores the colour only.
    """

    name = "prompt_color"

    def __init__(
        self,
        *,
        background: tuple[float, float, float] = (0.5, 0.5, 0.5),
        tau: float = 0.35,
        mask_tau: float = 0.15,
        target_area: float | None = None,
    ) -> None:
        super().__init__()
        if tau <= 0 or mask_tau <= 0:
            raise ValueError(f"tau and mask_tau must be > 0, got {tau}, {mask_tau}")
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32), persistent=False)
        self.tau = tau
        self.mask_tau = mask_tau
        if target_area is not None and not 0 < target_area <= 1:
            raise ValueError(f"target_area must lie in (0, 1] or be None, got {target_area}")
        self.target_area = target_area
        self.freeze()

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """`(n 3 H W)` in [0, 1] and `n` prompts -> `(n,)`."""
        video = images[:, None]  # (n 1 3 H W)
        names = [prompt_color(p) for p in prompts]
        known = torch.tensor([n is not None for n in names], device=video.device)
        target = torch.tensor([COLORS[n] if n else (0.0, 0.0, 0.0) for n in names], device=video.device)
        v = video.float()
        bg = self.background.to(v.device).view(1, 1, 3, 1, 1)
        # Soft foreground mask: 0 at the background colour, -> 1 far from it.
        d_bg = ((v - bg) ** 2).sum(2)  # (b f H W)
        mask = 1 - torch.exp(-d_bg / (2 * self.mask_tau**2))
        d_t = ((v - target.view(-1, 1, 3, 1, 1)) ** 2).sum(2)  # (b f H W)
        match = torch.exp(-d_t / (2 * self.tau**2))
        score = (mask * match).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) + 1e-3)
        if self.target_area is not None:
            area = mask.mean((1, 2, 3))
            score = (
                score
                * torch.minimum(area, torch.full_like(area, self.target_area))
                / torch.maximum(area, torch.full_like(area, self.target_area))
            )
        return torch.where(known, score, torch.zeros_like(score))
