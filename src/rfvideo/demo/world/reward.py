"""The world's reward: the prompt's colour, the world's square size, and a composition term.

`SquareWorldReward` plays the role an aesthetic image scorer plays for real video: it scores one frame at a
time, and its per-frame optimum is a particular still picture (a square of the prompt's colour and the
world's size, centred in the frame), the way an aesthetic scorer favours one well-composed frame. The
world's clips carry the square across the frame, through the centre and out of it, so a clip can only keep
every frame at that optimum by not moving: this is the paper's failure mode of scoring all frames with an
image reward. Scored on the last frame only, a moving clip can still end well composed.

    reward = colour match x size term x composition term [x shape term]        (each in [0, 1])

colour match and size term are `PromptColorReward(target_area=...)`; the composition term is
`exp(-|c - c0|^2 / (2 sigma^2))` of the soft foreground's centre of mass `c` (pixels, relative to the frame
size) against the frame centre `c0`. The shape term prefers one solid square: a solid axis-aligned square
of `M` pixels has the spatial variance `(M - 1) / 12` along each axis, so with the soft foreground's mass
`M`, `q = (M - 1) / 12` and variances `var_y, var_x`,
`shape = exp(-((var_y / q - 1)^2 + (var_x / q - 1)^2) / (2 tau^2))`.
Two strips with a gap, a bar or scattered blocks spread further than a square of their mass and score
lower. The shape term is off by default (`shape_tau=None`): without it, stage 2 at lr 1e-3 split the
square in two strips along a token edge; with it (tau 0.5, lr 1e-3, one training seed) the messy stage-1
samples score near 0, the product gives little gradient, and stage 2 painted large areas instead
(last-frame area 0.66).

Legend: `n` images, `H W` pixel size.
"""

from __future__ import annotations

import torch

from rfvideo.demo.world.prompt_color import PromptColorReward
from rfvideo.rewards.base import FrameReward

__all__ = ["SquareWorldReward"]


class SquareWorldReward(FrameReward):
    """`reward(video (b f 3 H W) in [0,1], prompts) -> (b,)` in [0, 1], the mean over the frames it is given.

    Args:
        target_area: the world square's share of the frame (side / size squared).
        sigma: tolerance of the composition term, as a fraction of the frame side.
        composition: include the composition term (False: colour x size only).
        shape_tau: tolerance of the shape term (None, the default: no shape term).
    """

    name = "square_world"

    def __init__(
        self,
        *,
        target_area: float = 1 / 16,
        sigma: float = 0.125,
        composition: bool = True,
        shape_tau: float | None = None,
    ) -> None:
        super().__init__()
        if not 0 < sigma:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if shape_tau is not None and not 0 < shape_tau:
            raise ValueError(f"shape_tau must be > 0 or None, got {shape_tau}")
        self.shape_tau = shape_tau
        self.color_size = PromptColorReward(target_area=target_area)
        self.sigma = sigma
        self.composition = composition
        self.freeze()

    def _mask(self, images: torch.Tensor) -> torch.Tensor:
        """Soft foreground `(n H W)` in [0, 1]: how far each pixel is from the background grey."""
        v = images.float()
        bg = self.color_size.background.to(v.device).view(1, 3, 1, 1)
        return 1 - torch.exp(-((v - bg) ** 2).sum(1) / (2 * self.color_size.mask_tau**2))

    def composition_term(self, images: torch.Tensor) -> torch.Tensor:
        """`(n 3 H W)` -> `(n,)`: closeness of the soft foreground's centre of mass to the frame centre."""
        mask = self._mask(images)  # (n H W)
        H, W = mask.shape[-2:]
        # pixel centres in [0, 1] of the frame side, so sigma means the same at every resolution
        ys = (torch.arange(H, device=mask.device, dtype=mask.dtype) + 0.5).view(1, H, 1) / H
        xs = (torch.arange(W, device=mask.device, dtype=mask.dtype) + 0.5).view(1, 1, W) / W
        mass = mask.sum((1, 2)) + 1e-6
        cy, cx = (mask * ys).sum((1, 2)) / mass, (mask * xs).sum((1, 2)) / mass
        return torch.exp(-((cy - 0.5) ** 2 + (cx - 0.5) ** 2) / (2 * self.sigma**2))

    def shape_term(self, images: torch.Tensor) -> torch.Tensor:
        """`(n 3 H W)` -> `(n,)`: how close the soft foreground's spread is to a solid square of its mass."""
        if self.shape_tau is None:
            raise ValueError("shape_term needs shape_tau (this reward was built with shape_tau=None)")
        mask = self._mask(images)  # (n H W)
        H, W = mask.shape[-2:]
        ys = torch.arange(H, device=mask.device, dtype=mask.dtype).view(1, H, 1)  # pixels
        xs = torch.arange(W, device=mask.device, dtype=mask.dtype).view(1, 1, W)
        mass = mask.sum((1, 2)) + 1e-6
        cy, cx = (mask * ys).sum((1, 2)) / mass, (mask * xs).sum((1, 2)) / mass
        var_y = (mask * (ys - cy.view(-1, 1, 1)) ** 2).sum((1, 2)) / mass
        var_x = (mask * (xs - cx.view(-1, 1, 1)) ** 2).sum((1, 2)) / mass
        # a solid s x s square of pixels: variance (s^2 - 1) / 12 per axis (discrete), mass s^2
        square = (mass - 1).clamp(min=0) / 12 + 1e-6
        err = (var_y / square - 1) ** 2 + (var_x / square - 1) ** 2
        return torch.exp(-err / (2 * self.shape_tau**2))

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """`(n 3 H W)` in [0, 1] and `n` prompts -> `(n,)`."""
        score = self.color_size.score_images(images, prompts)
        if self.composition:
            score = score * self.composition_term(images)
        if self.shape_tau is not None:
            score = score * self.shape_term(images)
        return score
