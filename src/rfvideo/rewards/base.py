"""The reward contract shared by every reward model and by the ensemble.

`reward(video (b f 3 H W) in [0, 1], prompts: list[str]) -> (b,)`, differentiable w.r.t. `video`.
Reward models are frozen: their parameters never require grad and they stay in eval mode even when a
parent module calls `.train()` (dropout in a reward head would make the training signal noisy).

Legend: `b` batch (videos), `f` frames, `n` images (frames of all videos, flattened), `H W` pixel size.
"""

from __future__ import annotations

from abc import abstractmethod

import einops
import torch
from torch import nn

__all__ = ["FrameReward", "Reward", "validate_video"]

# Decoded videos are clamped to [0, 1]; the slack only absorbs float round-off of upstream ops.
RANGE_TOLERANCE = 1e-3


def validate_video(video: torch.Tensor, prompts: list[str], *, check_range: bool = True) -> None:
    """Raise `ValueError` unless `video` is a float `(b f 3 H W)` tensor in [0, 1] with one prompt per video.

    Args:
        video: `(b f 3 H W)` clip.
        prompts: one prompt per video.
        check_range: also check the value range (one device sync).
    """
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"video must be a torch.Tensor, got {type(video).__name__}")
    if video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be (b f 3 H W), got shape {tuple(video.shape)}")
    if min(video.shape) < 1:
        raise ValueError(f"video has an empty dimension: shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise ValueError(f"video must be floating point in [0, 1], got dtype {video.dtype}")
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a list of str, got {type(prompts).__name__}")
    if len(prompts) != video.shape[0]:
        raise ValueError(f"got {len(prompts)} prompts for a batch of {video.shape[0]} videos")
    if check_range:
        lo, hi = torch.aminmax(video.detach())
        lo, hi = float(lo), float(hi)
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            raise ValueError(f"video values must lie in [0, 1], got min {lo:.4f} max {hi:.4f}")


class Reward(nn.Module):
    """Base class: validates inputs, then calls `score`.

    Subclasses set `name` (log key `train/reward/<name>`), set `is_video = True` when they must see the
    whole clip (the ensemble then skips frame selection for them), and implement `score`.
    """

    name: str = "reward"
    is_video: bool = False
    #: Whether forward checks the [0, 1] range (costs one device sync per call).
    check_range: bool = True

    @abstractmethod
    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """`(b f 3 H W)` in [0, 1], validated -> `(b,)`."""

    def forward(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Score each video against its prompt.

        Args:
            video: `(b f 3 H W)` float in [0, 1].
            prompts: one prompt per video.

        Returns:
            `(b,)` float32 rewards, differentiable w.r.t. `video`.
        """
        validate_video(video, prompts, check_range=self.check_range)
        out = self.score(video, prompts)
        if out.shape != (video.shape[0],):
            raise RuntimeError(f"{type(self).__name__}.score returned shape {tuple(out.shape)}")
        return out.float()

    def freeze(self) -> Reward:
        """Freeze every parameter and switch to eval mode (call at the end of `__init__`)."""
        self.requires_grad_(False)
        return super().train(False)

    def train(self, mode: bool = True) -> Reward:
        # Frozen scorer: ignore `.train()` from a parent so dropout/batch-norm stay in inference mode.
        return super().train(False)


class FrameReward(Reward):
    """An image reward applied to every frame of the clip it is given, averaged over frames.

    Subclasses implement `score_images`; the ensemble chooses which frames it sees (`FrameSelector`).
    """

    @abstractmethod
    def score_images(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """`(n 3 H W)` in [0, 1] and `n` prompts -> `(n,)`."""

    def score(self, video: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        b, f = video.shape[:2]
        images = einops.rearrange(video, "b f c h w -> (b f) c h w")
        per_image = [p for p in prompts for _ in range(f)]  # prompt of video i repeated over its f frames
        scores = self.score_images(images, per_image)
        return einops.rearrange(scores, "(b f) -> b f", b=b).float().mean(1)
