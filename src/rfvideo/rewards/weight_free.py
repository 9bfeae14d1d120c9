"""Rewards that need no weights: temporal flicker, motion magnitude, colourfulness (all differentiable).

They back the offline demo and act as regularisers beside learned rewards (e.g. a small motion term against
the static-video bias of image rewards, a flicker term against temporal noise).

Legend: `b` batch, `f` frames, `H W` pixel size, `h w` analysis size after pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rfvideo.rewards.base import FrameReward, Reward

__all__ = ["ColorfulnessReward", "MotionReward", "TemporalFlickerReward", "colorfulness"]


def _need_two_frames(video: torch.Tensor, name: str) -> None:
    if video.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 frames, got {video.shape[1]}")


class TemporalFlickerReward(Reward):
    """VBench temporal flickering, differentiable: `(255 - MAE) / 255` with MAE the mean absolute difference
    of consecutive frames in 0..255 (mean over pixels, channels and frame pairs). 1 = no change at all.

    VBench computes it on uint8 frames of static-prompt videos; here frames are float, not rounded.
    """

    name = "temporal_flicker"
    is_video = True

    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        _need_two_frames(video, self.name)
        mae = (video[:, 1:].float() - video[:, :-1].float()).abs().mul(255).mean((1, 2, 3, 4))  # (b,)
        return (255 - mae) / 255


class MotionReward(Reward):
    """Mean motion speed between consecutive frames, in pixels per frame of the input resolution.

    The measure: luma frames are average-pooled by `downsample` (so that motion is small against the pooled
    pixel, where brightness constancy `I_x u + I_y v + I_t = 0` holds), and the speed along the image
    gradient ("normal flow", `|I_t| / |grad I|`) is averaged with weights `|grad I|^2`:
    `speed = sum |I_t| |grad I| / (sum |grad I|^2 + eps)`, times `downsample`. Spatial gradients are central
    differences of the mean of the two frames, `I_t` their difference, all on the interior pixels. It is a
    cheap optical-flow proxy: exact for a translated linear ramp, it underestimates motion across flat
    regions (aperture problem) and large jumps. The reward is the mean over frame pairs.
    """

    name = "motion"
    is_video = True

    def __init__(self, *, downsample: int = 4, eps: float = 1e-6) -> None:
        super().__init__()
        if downsample < 1 or eps <= 0:
            raise ValueError(f"downsample must be >= 1 and eps > 0, got {downsample}, {eps}")
        self.downsample = downsample
        self.eps = eps

    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        _need_two_frames(video, self.name)
        b, f = video.shape[:2]
        luma_w = torch.tensor([0.299, 0.587, 0.114], device=video.device, dtype=torch.float32)
        y = torch.einsum("bfchw,c->bfhw", video.float(), luma_w)
        if self.downsample > 1:
            y = F.avg_pool2d(y, self.downsample)  # (b f h w)
        if min(y.shape[-2:]) < 3:
            raise ValueError(f"{self.name}: pooled frames {tuple(y.shape[-2:])} too small; lower downsample")
        mid = 0.5 * (y[:, 1:] + y[:, :-1])  # (b f-1 h w)
        it = (y[:, 1:] - y[:, :-1])[..., 1:-1, 1:-1]
        gx = 0.5 * (mid[..., 1:-1, 2:] - mid[..., 1:-1, :-2])
        gy = 0.5 * (mid[..., 2:, 1:-1] - mid[..., :-2, 1:-1])
        g2 = gx**2 + gy**2
        g = torch.sqrt(g2 + self.eps**2)  # eps keeps the gradient of sqrt finite on flat regions
        speed = (it.abs() * g).sum((-2, -1)) / (g2.sum((-2, -1)) + self.eps)  # (b f-1)
        return speed.mean(1) * self.downsample


def colorfulness(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness M of `(n 3 H W)` images in [0, 1], on the 0..255 scale.

    `rg = R - G`, `yb = (R + G) / 2 - B`; `M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)`
    with population standard deviations over pixels. `eps` inside the square roots keeps gradients finite.
    """
    x = images.float() * 255
    r, g, b = x.unbind(1)
    rg = r - g
    yb = 0.5 * (r + g) - b
    var = rg.var((-2, -1), correction=0) + yb.var((-2, -1), correction=0)
    mean2 = rg.mean((-2, -1)) ** 2 + yb.mean((-2, -1)) ** 2
    return torch.sqrt(var + eps) + 0.3 * torch.sqrt(mean2 + eps)


class ColorfulnessReward(FrameReward):
    """Hasler-Suesstrunk colourfulness per frame (0..255 scale, ~0 grey to ~100+ vivid), frame mean."""

    name = "colorfulness"

    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return colorfulness(images)
