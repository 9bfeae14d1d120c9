"""The world's reward: the prompt's colour, the world's square size, and a composition term.

`SquareWorldReward` plays the role an aesthetic image scorer plays for real video: it scores one frame at a
time, and its per-frame optimum is a particular still picture (a square of the prompt's colour and the
world's size, centred in the frame), the way an aesthetic scorer favours one well-composed frame. The
world's clips carry the square across the frame, through the centre and out of it, so a clip can only keep
every frame at that optimum by not moving: this is the paper's failure mode of scoring all frames with an
image reward. Scored on the last frame only, a moving clip can still end well composed.

    reward = colour match x size term x composition term        (each in [0, 1])

colour match and size term are `PromptColorReward(target_area=...)`; the composition term is
`exp(-|c - c0|^2 / (2 sigma^2))` of the soft foreground's centre of mass `c` (pixels, relative to the frame
size) against the frame centre `c0`.

Legend: `n` images, `H W` pixel size.
"""

from __future__ import annotations

import torch

from rfvideo.rewards.base import FrameReward
from rfvideo.rewards.prompt_color import PromptColorReward

__all__ = ["SquareWorldReward"]


class SquareWorldReward(FrameReward):
    """`reward(video (b f 3 H W) in [0,1], prompts) -> (b,)` in [0, 1], the mean over the frames it is given.

    Args:
        target_area: the world square's share of the frame (side / size squared).
        sigma: tolerance of the composition term, as a fraction of the frame side.
        composition: include the composition term (False: colour x size only).
    """

    name = "square_world"

    def __init__(
        self, *, target_area: float = 1 / 16, sigma: float = 0.125, composition: bool = True
    ) -> None:
        super().__init__()
        if not 0 < sigma:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.color_size = PromptColorReward(target_area=target_area)
        self.sigma = sigma
        self.composition = composition
        self.freeze()

    def composition_term(self, images: torch.Tensor) -> torch.Tensor:
        """`(n 3 H W)` -> `(n,)`: closeness of the soft foreground's centre of mass to the frame centre."""
        v = images.float()
        bg = self.color_size.background.to(v.device).view(1, 3, 1, 1)
        mask = 1 - torch.exp(-((v - bg) ** 2).sum(1) / (2 * self.color_size.mask_tau**2))  # (n H W)
        H, W = mask.shape[-2:]
        # pixel centres in [0, 1] of the frame side, so sigma means the same at every resolution
        ys = (torch.arange(H, device=v.device, dtype=v.dtype) + 0.5).view(1, H, 1) / H
        xs = (torch.arange(W, device=v.device, dtype=v.dtype) + 0.5).view(1, 1, W) / W
        mass = mask.sum((1, 2)) + 1e-6
        cy, cx = (mask * ys).sum((1, 2)) / mass, (mask * xs).sum((1, 2)) / mass
        return torch.exp(-((cy - 0.5) ** 2 + (cx - 0.5) ** 2) / (2 * self.sigma**2))

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """`(n 3 H W)` in [0, 1] and `n` prompts -> `(n,)`."""
        score = self.color_size.score_images(images, prompts)
        if self.composition:
            score = score * self.composition_term(images)
        return score
