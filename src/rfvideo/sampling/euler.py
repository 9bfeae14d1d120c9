"""Bidirectional multi-step Euler sampler with classifier-free guidance (ODE trajectories for stage 1).

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent height/width, `n d` text tokens /
width, `s` number of returned states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rfvideo.sampling.schedule import FlowMatchSchedule, shift_sigma

__all__ = ["EulerTrajectory", "euler_sigmas", "euler_sample_cfg"]

# model_fn(x_t (b c f h w), timestep (b,) in [0, T], encoder_hidden_states (b n d)) -> v (b c f h w)
FlowModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(kw_only=True)
class EulerTrajectory:
    """Result of `euler_sample_cfg`."""

    latents: torch.Tensor
    """Final clean latents at t = 0, `(b c f h w)`."""
    trajectory: torch.Tensor
    """States at the requested timesteps, `(b s c f h w)`, in the order of `timesteps`."""
    timesteps: torch.Tensor
    """The requested timesteps (shifted, units of T), float32 `(s,)`."""


def euler_sigmas(
    num_steps: int,
    *,
    shift: float = 5.0,
    num_train_timesteps: int = 1000,
    include_timesteps: Sequence[float] = (),
) -> torch.Tensor:
    """The Euler grid: `num_steps` uniform unshifted levels `1, 1 - 1/N, ..., 1/N`, shifted, plus the end 0.

    Requested (already shifted) timesteps that are not on the grid are inserted into it, so the trajectory
    passes through them exactly (their unshifted values are what a caller passes to diffusers'
    `set_timesteps(sigmas=...)` for the same grid).

    Returns:
        Decreasing shifted noise levels `(m + 1,)` from 1 to 0, float64; m >= num_steps model steps.
    """
    if not (isinstance(num_steps, int) and num_steps > 0):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    base = shift_sigma(1 - torch.arange(num_steps, dtype=torch.float64) / num_steps, shift)
    extra = torch.tensor([float(t) for t in include_timesteps], dtype=torch.float64) / num_train_timesteps
    if bool(((extra < 0) | (extra > 1)).any()):
        raise ValueError(
            f"return_timesteps must lie in [0, {num_train_timesteps}], got {tuple(include_timesteps)}"
        )
    grid = torch.cat([base, extra, torch.zeros(1, dtype=torch.float64)])
    # Round before de-duplicating so 833.33 requested by hand merges with a grid point 833.333...
    grid = torch.unique(torch.round(grid * 1e6) / 1e6)
    return grid.flip(0)


def euler_sample_cfg(
    model_fn: FlowModelFn,
    noise: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    *,
    num_steps: int = 50,
    shift: float = 5.0,
    guidance_scale: float = 5.0,
    num_train_timesteps: int = 1000,
    schedule: FlowMatchSchedule | None = None,
    generator: torch.Generator | None = None,
    return_timesteps: Sequence[float] | None = None,
) -> EulerTrajectory:
    """Integrate the probability-flow ODE `dx/ds = v(x, s)` from `s = 1` (noise) to `s = 0` with Euler steps.

    Guidance (classifier-free): `v = v_u + g (v_c - v_u)`; step: `x_{s'} = x_s + (s' - s) v` (s' < s).
    The grid is `euler_sigmas(num_steps, shift=shift, include_timesteps=return_timesteps)`: requested
    timesteps that fall between grid points are inserted into the grid (one extra model step each), so
    every returned state is the ODE solution *at* that timestep, not the nearest grid state. Requested
    timesteps are rounded to 1e-6 in sigma; 833.33 therefore means itself, not 833.333... .

    Args:
        model_fn: `(x_t, timestep (b,), encoder_hidden_states) -> v`; e.g. a full-attention generator, or
            `lambda x, t, c: wan(x, t, c, return_dict=False)[0]` for diffusers' transformer.
        noise: the initial state at s = 1, `(b c f h w)`.
        cond: conditional text embeddings `(b n d)`.
        uncond: unconditional (negative-prompt) embeddings `(b n d)`; may be None when guidance_scale == 1.
        num_steps: number of uniform (pre-shift) steps.
        shift: timestep shift `k`.
        guidance_scale: `g`; 1 disables guidance (one model call per step).
        num_train_timesteps: `T` of `t = T s`.
        schedule: the few-step schedule whose states stage 1 regresses on; only used for the default
            of `return_timesteps` (the 50-step grid keeps its own `shift`). None: `FlowMatchSchedule()`.
        generator: unused (the ODE is deterministic); accepted so every sampler shares one signature.
        return_timesteps: shifted timesteps (units of T) at which to return the state; 1000 is `noise`,
            0 the final latents. None: `schedule.timesteps` and 0, i.e. (1000, 937.5, 833.33.., 625, 0).

    Returns:
        An `EulerTrajectory` (final latents, the requested states stacked `(b s c f h w)`, their timesteps).
    """
    del generator
    if return_timesteps is None:
        few_step = schedule if schedule is not None else FlowMatchSchedule()
        return_timesteps = (*few_step.timesteps.tolist(), 0.0)
    if noise.ndim != 5:
        raise ValueError(f"noise must be (b c f h w), got shape {tuple(noise.shape)}")
    if cond.shape[0] != noise.shape[0]:
        raise ValueError(f"batch mismatch: noise has {noise.shape[0]}, cond has {cond.shape[0]}")
    use_cfg = guidance_scale != 1.0
    if use_cfg and uncond is None:
        raise ValueError(f"guidance_scale={guidance_scale} needs uncond embeddings")
    if use_cfg and uncond.shape[0] != noise.shape[0]:
        raise ValueError(f"batch mismatch: noise has {noise.shape[0]}, uncond has {uncond.shape[0]}")
    sigmas = euler_sigmas(
        num_steps, shift=shift, num_train_timesteps=num_train_timesteps, include_timesteps=return_timesteps
    )
    wanted = [round(float(t) / num_train_timesteps, 6) for t in return_timesteps]
    b = noise.shape[0]
    states: dict[float, torch.Tensor] = {}
    # The state is integrated in float32 so bf16 models do not accumulate rounding over ~50 steps.
    x = noise.float()
    for i in range(len(sigmas) - 1):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x_in = x.to(noise.dtype)
        states[round(s, 6)] = x_in
        t = torch.full((b,), s * num_train_timesteps, device=noise.device, dtype=torch.float32)
        v = model_fn(x_in, t, cond)
        if use_cfg:
            v_u = model_fn(x_in, t, uncond)
            v = v_u + guidance_scale * (v - v_u)
        x = x + (s_next - s) * v.float()
    x = x.to(noise.dtype)
    states[0.0] = x
    trajectory = torch.stack([states[w] for w in wanted], dim=1)
    timesteps = torch.tensor([float(t) for t in return_timesteps], dtype=torch.float32)
    return EulerTrajectory(latents=x, trajectory=trajectory, timesteps=timesteps)
