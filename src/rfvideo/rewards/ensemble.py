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

Contract check: every term must return a floating-point `(b,)` tensor; anything else is a `ValueError`
naming the term (a `(b, 1)` result would otherwise broadcast the total to `(b, b)`).

Non-finite terms: `on_nonfinite="raise"` raises `FloatingPointError` naming the term; `"report"` lists the
term in `RewardOutput.nonfinite` and lets the NaN reach `total` (a trainer then skips the step). Left unset
(None) the caller decides per call (`forward(..., on_nonfinite=...)`), and a call that does not say raises:
the training module asks for "report" so that a NaN skips the step by default.

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
from rfvideo.rewards.frames import FramePlan, FrameSelector

__all__ = ["RewardEnsemble", "RewardOutput", "Normalization", "NonFinitePolicy"]

Normalization = Literal["none", "fixed", "running"]
NonFinitePolicy = Literal["raise", "report"]


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
        on_nonfinite: "raise" (FloatingPointError naming the term), "report" (listed in the output), or
            None (default): the caller's choice per call, "raise" when the caller does not say. The
            training module asks for "report" (skip the step); set "raise" here to stop training instead.
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
        on_nonfinite: NonFinitePolicy | None = None,
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
        if on_nonfinite not in ("raise", "report", None):
            raise ValueError(f"on_nonfinite must be raise, report or None, got {on_nonfinite!r}")
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

    def train(self, mode: bool = True) -> RewardEnsemble:
        """Training mode only switches the running statistics on; the reward models stay frozen in eval."""
        self.training = mode
        for term in self.terms.values():
            term.train(False)
        return self

    def plan_frames(self, num_pixel_frames: int, generator: torch.Generator | None = None) -> FramePlan:
        """Draw this step's frames once: what to decode (a tail; the whole clip with a video reward) and
        what image rewards score. Pass the plan to `forward` with the decoded frames."""
        selected = self.frames.scored_frames(num_pixel_frames, generator)
        first = 0 if self.has_video_rewards else selected[0]
        return FramePlan(decoded=list(range(first, num_pixel_frames)), selected=selected)

    def _normalise(self, name: str, raw: torch.Tensor, finite: bool) -> torch.Tensor:
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
                # A non-finite batch contributes nothing but still joins the all-reduce (every rank must make
                # the same collective calls), and its flag makes every rank skip this update together.
                x = raw.detach().float() if finite else torch.zeros_like(raw, dtype=torch.float32)
                stats = torch.stack(
                    [
                        x.sum(),
                        (x * x).sum(),
                        torch.tensor(float(x.numel()), device=x.device),
                        torch.tensor(0.0 if finite else 1.0, device=x.device),
                    ]
                )
                if dist.is_available() and dist.is_initialized():
                    dist.all_reduce(stats)
                if float(stats[3]) == 0:
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
        if not finite:
            return torch.full_like(raw, float("nan"))
        return (raw - m) / torch.sqrt(v + self.eps)

    def _scored_positions(self, num_frames: int, plan: FramePlan | None) -> list[int]:
        """Positions in `video` (of `num_frames` frames) of the frames image rewards score (see `forward`)."""
        if plan is None:
            if self.frames.is_random:
                raise ValueError(
                    "the random frame policy needs the frames drawn for this step: pass plan= "
                    "(RewardEnsemble.plan_frames(...)), so the decode and the score agree"
                )
            return self.frames.scored_frames(num_frames)  # the video is the whole clip
        if len(plan.decoded) != num_frames:
            raise ValueError(f"the plan decodes {len(plan.decoded)} frames but the video has {num_frames}")
        if self.has_video_rewards and plan.decoded[0] != 0:
            video_terms = [n for n, r in self.terms.items() if getattr(r, "is_video", False)]
            raise ValueError(
                f"video rewards {video_terms} need the whole clip; the plan decodes {plan.decoded}"
            )
        return plan.scored_positions

    def _check_contract(self, name: str, raw: object, batch: int) -> torch.Tensor:
        if not isinstance(raw, torch.Tensor):
            raise ValueError(f"reward term {name!r} returned {type(raw).__name__}, not a (b,) tensor")
        if tuple(raw.shape) != (batch,):
            raise ValueError(
                f"reward term {name!r} returned shape {tuple(raw.shape)}; the contract is (b,) = ({batch},)"
            )
        if not raw.is_floating_point():
            raise ValueError(f"reward term {name!r} returned dtype {raw.dtype}; the contract is float")
        return raw.float()

    def forward(
        self,
        video: torch.Tensor,
        prompts: list[str],
        *,
        plan: FramePlan | None = None,
        on_nonfinite: NonFinitePolicy | None = None,
    ) -> RewardOutput:
        """Score a batch.

        Args:
            video: `(b f 3 H W)` in [0, 1]: the whole clip, or (with `plan`) the plan's decoded frames, a
                run that ends at the clip's last frame.
            prompts: one prompt per video.
            plan: the step's frames (`plan_frames`): `video` holds its `decoded` frames, image rewards score
                its `selected` ones. Default: `video` is the whole clip, scored with the selector's frames.
                Required with the `random` policy (draw once with `plan_frames`).
            on_nonfinite: the caller's policy for NaN/Inf terms, used when the ensemble's own is None.

        Returns:
            `RewardOutput` with total and per-term raw and normalised `(b,)` rewards.

        Raises:
            ValueError: bad frames, or a term breaking the reward contract (named).
            FloatingPointError: a term returned NaN/Inf under the "raise" policy (named).
        """
        validate_video(video, prompts)
        policy = self.on_nonfinite or on_nonfinite or "raise"
        if policy not in ("raise", "report"):
            raise ValueError(f"on_nonfinite must be raise or report, got {policy!r}")
        image_video = video[:, self._scored_positions(video.shape[1], plan)]
        b = video.shape[0]
        terms: dict[str, torch.Tensor] = {}
        normalized: dict[str, torch.Tensor] = {}
        bad: list[str] = []
        total = torch.zeros(b, device=video.device, dtype=torch.float32)
        for name, reward in self.terms.items():
            out = reward(video if getattr(reward, "is_video", False) else image_video, prompts)
            raw = self._check_contract(name, out, b)
            finite = bool(torch.isfinite(raw).all())
            if not finite:
                if policy == "raise":
                    raise FloatingPointError(
                        f"reward term {name!r} returned non-finite values {raw.tolist()}"
                    )
                bad.append(name)
            # Non-finite values stay out of the running statistics but reach total: nothing dropped silently.
            norm = self._normalise(name, raw, finite)
            terms[name], normalized[name] = raw, norm
            total = total + self.weights[name] * norm
        return RewardOutput(total=total, terms=terms, normalized=normalized, nonfinite=bad)
