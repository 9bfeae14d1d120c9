"""Flow-matching timestep schedule with Wan's shift, for few-step samplers.

Shapes: `s` number of denoising steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["FlowMatchSchedule", "shift_sigma"]


def shift_sigma(sigma: float | torch.Tensor, shift: float) -> float | torch.Tensor:
    """Timestep shift of rectified-flow samplers (SD3 / Wan).

    Implements `s' = k s / (1 + (k - 1) s)` with `k = shift`; it maps 0 -> 0 and 1 -> 1 and, for k > 1,
    moves every interior noise level towards 1 (more steps spent at high noise).

    Args:
        sigma: noise level(s) in [0, 1].
        shift: the shift factor `k` (> 0); 1 is the identity.

    Returns:
        The shifted noise level(s), same type as `sigma`.
    """
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigma / (1 + (shift - 1) * sigma)


@dataclass(kw_only=True)
class FlowMatchSchedule:
    """The few-step denoising schedule of the chunk-wise sampler.

    Flow matching (Wan2.1's training objective): `x_t = (1 - s) x_0 + s eps`, `t = num_train_timesteps * s`,
    and the model predicts `v = eps - x_0`. `denoising_steps` are given *before* the shift, in timestep units;
    `timesteps` are after it: (1000, 750, 500, 250) with shift 5 -> (1000, 937.5, 833.33, 625).
    """

    num_train_timesteps: int = 1000
    """Timestep scale `T`: `t = T * sigma`."""
    shift: float = 5.0
    """Shift factor `k` of `s' = k s / (1 + (k - 1) s)`; 1 disables the shift."""
    denoising_steps: Sequence[float] = (1000, 750, 500, 250)
    """Unshifted timesteps, strictly decreasing, the first equal to `num_train_timesteps` (pure noise)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.num_train_timesteps, int) and self.num_train_timesteps > 0):
            raise ValueError(f"num_train_timesteps must be a positive int, got {self.num_train_timesteps!r}")
        if not (isinstance(self.shift, int | float) and math.isfinite(self.shift) and self.shift > 0):
            raise ValueError(f"shift must be a finite number > 0, got {self.shift!r}")
        steps = tuple(float(t) for t in self.denoising_steps)
        if len(steps) == 0:
            raise ValueError(f"denoising_steps must not be empty, got {self.denoising_steps!r}")
        if any(not (0 < t <= self.num_train_timesteps) for t in steps):
            raise ValueError(
                f"denoising_steps must lie in (0, {self.num_train_timesteps}], got {self.denoising_steps!r}"
            )
        if any(a <= b for a, b in zip(steps, steps[1:])):
            raise ValueError(f"denoising_steps must be strictly decreasing, got {self.denoising_steps!r}")
        # The sampler feeds the initial noise in as x at the first step: only exact at sigma = 1.
        if steps[0] != self.num_train_timesteps:
            raise ValueError(
                f"denoising_steps must start at num_train_timesteps={self.num_train_timesteps} (pure noise), "
                f"got {self.denoising_steps!r}"
            )
        self.denoising_steps = steps

    @property
    def num_steps(self) -> int:
        """Number of denoising steps `s`."""
        return len(self.denoising_steps)

    @property
    def sigmas(self) -> torch.Tensor:
        """Shifted noise levels, float32 `(s,)`, in (0, 1]."""
        raw = torch.tensor(self.denoising_steps, dtype=torch.float64) / self.num_train_timesteps
        return shift_sigma(raw, self.shift).to(torch.float32)

    @property
    def timesteps(self) -> torch.Tensor:
        """Shifted timesteps `T * sigmas`, float32 `(s,)`; what the model is conditioned on."""
        raw = torch.tensor(self.denoising_steps, dtype=torch.float64) / self.num_train_timesteps
        return (shift_sigma(raw, self.shift) * self.num_train_timesteps).to(torch.float32)
