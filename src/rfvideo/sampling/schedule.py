"""Flow-matching timestep schedule with Wan's shift, for few-step samplers.

Two ways to turn a step's timestep `t` into the noise level `sigma` that converts the model's flow into x0
and re-noises the next step's input (`FlowMatchSchedule.sigma_lookup`):

- "continuous" (rfvideo, Self-Forcing): `sigma = t / T`.
- "table" (CausVid's `FlowMatchScheduler(shift=8, sigma_min=0, extra_one_step=True).set_timesteps(1000)`):
  a table of `N` entries `sigma_i = shift'(1 - i / N)`, i = 0..N-1, with the table's own shift `k'`; a
  step uses the entry whose timestep `T sigma_i` is nearest to `t` (the first, i.e. noisier, on a tie, as
  `torch.argmin`). The model is still conditioned on `t` itself. For CausVid's steps 757 / 522 that is
  entry 720 / 880, sigma 28/37 / 12/23, 2.4e-4 / 2.6e-4 below t / 1000.

Shapes: `s` number of denoising steps, `N` entries of the sigma table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["SIGMA_LOOKUPS", "FlowMatchSchedule", "shift_sigma"]

SIGMA_LOOKUPS = ("continuous", "table")


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
    sigma_lookup: str = "continuous"
    """How a step's timestep gives its noise level: "continuous" (`t / T`) or "table" (the nearest entry of
    the `sigma_table_size`-entry table shifted by `sigma_table_shift`; CausVid), see the module docstring."""
    sigma_table_size: int = 1000
    """Entries `N` of the sigma table (only read with `sigma_lookup="table"`)."""
    sigma_table_shift: float = 8.0
    """Shift `k'` of the sigma table, independent of `shift` (only read with `sigma_lookup="table"`; CausVid
    builds its table with 8 whatever its steps)."""

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
        if self.sigma_lookup not in SIGMA_LOOKUPS:
            raise ValueError(f"sigma_lookup must be one of {SIGMA_LOOKUPS}, got {self.sigma_lookup!r}")
        size = self.sigma_table_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f"sigma_table_size must be an int >= 2, got {size!r}")
        table_shift = self.sigma_table_shift
        if not (isinstance(table_shift, int | float) and math.isfinite(table_shift) and table_shift > 0):
            raise ValueError(f"sigma_table_shift must be a finite number > 0, got {table_shift!r}")

    @property
    def num_steps(self) -> int:
        """Number of denoising steps `s`."""
        return len(self.denoising_steps)

    @property
    def sigmas(self) -> torch.Tensor:
        """Noise level of each step, float32 `(s,)`, in (0, 1]: the shifted `t / T` ("continuous") or the
        table entry nearest to each step's timestep ("table")."""
        raw = torch.tensor(self.denoising_steps, dtype=torch.float64) / self.num_train_timesteps
        shifted = shift_sigma(raw, self.shift)
        if self.sigma_lookup == "table":
            table = self.sigma_table()
            # (s N): distance of each step's timestep to each entry's; argmin takes the first on a tie
            dist = (table[None, :] - shifted[:, None]).abs() * self.num_train_timesteps
            shifted = table[dist.argmin(dim=1)]
        return shifted.to(torch.float32)

    def sigma_table(self) -> torch.Tensor:
        """The lookup table, float64 `(N,)`: `shift'(1 - i / N)` for i = 0..N-1, decreasing from 1."""
        n = self.sigma_table_size
        raw = 1.0 - torch.arange(n, dtype=torch.float64) / n
        return shift_sigma(raw, float(self.sigma_table_shift))

    @property
    def model_timesteps(self) -> list[float]:
        """The timestep each step's forward is conditioned on, as Python floats `(s,)`: `sigma_j * T`
        ("continuous", computed from the float32 sigmas as the sampler always has) or the step's own
        shifted timestep, independent of the table ("table": CausVid feeds its integer steps)."""
        if self.sigma_lookup == "table":
            return [float(t) for t in self.timesteps]
        return [s * self.num_train_timesteps for s in self.sigmas.tolist()]

    @property
    def timesteps(self) -> torch.Tensor:
        """Shifted timesteps `T * shift(steps / T)`, float32 `(s,)`; what the model is conditioned on
        (`T * sigmas` with the "continuous" lookup)."""
        raw = torch.tensor(self.denoising_steps, dtype=torch.float64) / self.num_train_timesteps
        return (shift_sigma(raw, self.shift) * self.num_train_timesteps).to(torch.float32)
