"""Weighted sum of rewards with frame selection, per-term normalisation and non-finite checks.

    total = sum_k weights[k] * normalise_k(R_k(video_k, prompts))

Image rewards (`is_video = False`) see the frames the `FrameSelector` picks and average over them; video
rewards (`is_video = True`) see the whole clip they are given. Normalisation per term:

    none     R
    fixed    (R - mean) / std, with mean/std given
    running  (R - m) / sqrt(v + eps), with m, v exponential moving averages (decay `momentum`) of the batch
             mean and of the batch's mean squared deviation from the updated m. They update only in training
             mode, from detached values (all-reduced over ranks when torch.distributed is initialised), and
             live in buffers so they are checkpointed. The first update copies the batch statistics.

Legend: `b` batch, `f` pixel frames, `H W` pixel size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from rfvideo.rewards.base import Reward, validate_video
from rfvideo.rewards.frames import FrameSelector

__all__ = ["RewardEnsemble", "RewardOutput", "Normalization"]

Normalization = Literal["none", "fixed", "running"]


@dataclass
class RewardOutput:
    """What the ensemble returns; `terms`/`normalized` are keyed by term name (log `train/reward/<name>`)."""

    total: torch.Tensor
    """`(b,)` weighted sum of the normalised terms (differentiable)."""
    terms: dict[str, torch.Tensor]
    """`(b,)` raw reward of each term (differentiable)."""
    normalized: dict[str, torch.Tensor]
    """`(b,)` normalised reward of each term (equal to the raw one for "none")."""
    nonfinite: list[str] = field(default_factory=list)
    """Terms that produced NaN/Inf (only with `on_nonfinite="report"`; `total` is then non-finite too)."""


class RewardEnsemble(nn.Module):
    """Weighted, normalised sum of rewards.

    Args:
        terms: reward modules by name (the key is the log name).
        weights: weight per term; every term needs one (0 logs a term without optimising it).
        frames: which pixel frames image rewards score.
        normalize: per-term "none" (default for missing keys), "fixed" or "running".
        fixed_stats: `(mean, std)` per "fixed" term.
        momentum: EMA decay of "running" statistics.
        eps: added to the running variance.
        on_nonfinite: "raise" (FloatingPointError naming the term) or "report" (listed in the output).
    """

    def __init__(
        self,
        terms: Mapping[str, Reward],
        weights: Mapping[str, float],
        frames: FrameSelector | None = None,
        *,
        normalize: Mapping[str, Normalization] | None = None,
        fixed_stats: Mapping[str, Sequence[float]] | None = None,
        momentum: float = 0.99,
        eps: float = 1e-6,
        on_nonfinite: Literal["raise", "report"] = "raise",
    ) -> None:
        super().__init__()
        if not terms:
            raise ValueError("terms is empty")
        if set(weights) != set(terms):
            raise ValueError(f"weights keys {sorted(weights)} must equal terms keys {sorted(terms)}")
        normalize = dict(normalize or {})
        fixed_stats = dict(fixed_stats or {})
        if unknown := set(normalize) - set(terms):
            raise ValueError(f"normalize names unknown terms {sorted(unknown)}")
        for name, mode in normalize.items():
            if mode not in ("none", "fixed", "running"):
                raise ValueError(f"normalize[{name!r}] must be none, fixed or running, got {mode!r}")
        fixed_names = {n for n, m in normalize.items() if m == "fixed"}
        if set(fixed_stats) != fixed_names:
            raise ValueError(
                f"fixed_stats keys {sorted(fixed_stats)} must equal the fixed terms {sorted(fixed_names)}"
            )
        for name, stats in fixed_stats.items():
            if len(stats) != 2 or stats[1] <= 0:
                raise ValueError(f"fixed_stats[{name!r}] must be (mean, std > 0), got {tuple(stats)}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if on_nonfinite not in ("raise", "report"):
            raise ValueError(f"on_nonfinite must be raise or report, got {on_nonfinite!r}")
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {k: float(v) for k, v in weights.items()}
        self.frames = frames or FrameSelector()
        self.normalize = {k: normalize.get(k, "none") for k in terms}
        self.fixed_stats = {k: (float(v[0]), float(v[1])) for k, v in fixed_stats.items()}
        self.momentum = momentum
        self.eps = eps
        self.on_nonfinite = on_nonfinite
        for name, mode in self.normalize.items():
            if mode == "running":
                self.register_buffer(f"running_mean_{name}", torch.zeros(()))
                self.register_buffer(f"running_var_{name}", torch.ones(()))
                self.register_buffer(f"running_count_{name}", torch.zeros((), dtype=torch.long))

    @property
    def has_video_rewards(self) -> bool:
        return any(getattr(r, "is_video", False) for r in self.terms.values())

    def pixel_frames(self, num_pixel_frames: int, generator: torch.Generator | None = None) -> list[int]:
        """Pixel frames the trainer must decode: all of them if a video reward is present, else the
        selector's. Pass the result to `forward(..., frame_indices=...)` with the decoded frames."""
        if self.has_video_rewards:
            return list(range(num_pixel_frames))
        return self.frames.pixel_frames(num_pixel_frames, generator)

    def _normalise(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        mode = self.normalize[name]
        if mode == "none":
            return raw
        if mode == "fixed":
            mean, std = self.fixed_stats[name]
            return (raw - mean) / std
        m, v = getattr(self, f"running_mean_{name}"), getattr(self, f"running_var_{name}")
        count = getattr(self, f"running_count_{name}")
        if self.training:
            with torch.no_grad():
                x = raw.detach().float()
                stats = torch.stack([x.sum(), (x * x).sum(), torch.tensor(float(x.numel()), device=x.device)])
                if dist.is_available() and dist.is_initialized():
                    dist.all_reduce(stats)
                n = stats[2]
                bmean = stats[0] / n
                if int(count) == 0:
                    new_m = bmean
                else:
                    new_m = self.momentum * m + (1 - self.momentum) * bmean
                # mean squared deviation of the batch from the updated mean: sum((x - new_m)^2) / n
                bvar = stats[1] / n - 2 * new_m * bmean + new_m**2
                new_v = bvar if int(count) == 0 else self.momentum * v + (1 - self.momentum) * bvar
                m.copy_(new_m)
                v.copy_(new_v.clamp_min(0))
                count.add_(1)
        return (raw - m) / torch.sqrt(v + self.eps)

    def forward(
        self,
        video: torch.Tensor,
        prompts: list[str],
        generator: torch.Generator | None = None,
        *,
        frame_indices: Sequence[int] | None = None,
    ) -> RewardOutput:
        """Score a batch.

        Args:
            video: `(b f 3 H W)` in [0, 1]: the whole clip, or (with `frame_indices`) only those frames.
            prompts: one prompt per video.
            generator: randomness of the `random` frame policy.
            frame_indices: the pixel frames `video` holds (from `pixel_frames`); image rewards then score all
                of them, video rewards see them as the clip.

        Returns:
            `RewardOutput` with total and per-term raw and normalised `(b,)` rewards.
        """
        validate_video(video, prompts)
        if frame_indices is None:
            sel = self.frames.pixel_frames(video.shape[1], generator)
        else:
            if len(frame_indices) != video.shape[1]:
                raise ValueError(f"{len(frame_indices)} frame_indices for a video of {video.shape[1]} frames")
            sel = list(range(video.shape[1]))
        image_video = video[:, sel]
        terms: dict[str, torch.Tensor] = {}
        normalized: dict[str, torch.Tensor] = {}
        bad: list[str] = []
        total = torch.zeros(video.shape[0], device=video.device, dtype=torch.float32)
        for name, reward in self.terms.items():
            raw = reward(video if getattr(reward, "is_video", False) else image_video, prompts).float()
            if not torch.isfinite(raw).all():
                if self.on_nonfinite == "raise":
                    raise FloatingPointError(
                        f"reward term {name!r} returned non-finite values {raw.tolist()}"
                    )
                bad.append(name)
                # Keep NaN out of the running statistics but let it reach total: nothing is dropped silently.
                norm = raw if self.normalize[name] == "none" else torch.full_like(raw, float("nan"))
            else:
                norm = self._normalise(name, raw)
            terms[name], normalized[name] = raw, norm
            total = total + self.weights[name] * norm
        return RewardOutput(total=total, terms=terms, normalized=normalized, nonfinite=bad)
