"""Conversions between the clean latent, the noise, the noisy latent and the flow of rectified flow.

The flow-matching forward process (rectified flow, Wan2.1's training objective) and the model's target:

    (1)  x_t = (1 - s) x_0 + s eps            (`add_noise`)
    (2)  v   = eps - x_0 = dx_t / ds          (what the model predicts)

Solving (1)-(2) for the unknowns gives

    (3)  x_0 = x_t - s v                      (`x0_from_flow`)
    (4)  eps = x_t + (1 - s) v                (`eps_from_flow`)
    (5)  v   = (x_t - x_0) / s                (`flow_from_x0`, s > 0)

`sigma` is a float or a tensor broadcastable against the latents, e.g. `(b 1 f 1 1)` for per-frame noise
levels of `(b c f h w)` latents (see `expand_sigma`). All functions are pure and differentiable.
Legend: `b` batch, `c` channels, `f` latent frames, `h w` latent height/width.
"""

from __future__ import annotations

import torch

__all__ = ["add_noise", "eps_from_flow", "expand_sigma", "flow_from_x0", "x0_from_flow"]

Sigma = float | torch.Tensor


def expand_sigma(sigma: torch.Tensor, ndim: int = 5) -> torch.Tensor:
    """Reshape noise levels `(b,)` or `(b f)` to broadcast over `(b c f h w)` latents.

    Returns:
        `(b 1 1 1 1)` for `(b,)` input, `(b 1 f 1 1)` for `(b f)` input.
    """
    if sigma.ndim == 1:
        return sigma.reshape(-1, *([1] * (ndim - 1)))
    if sigma.ndim == 2:
        return sigma[:, None, :, None, None]
    raise ValueError(f"sigma must have shape (b,) or (b f), got {tuple(sigma.shape)}")


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Eq. (1): `x_t = (1 - s) x_0 + s eps`."""
    return (1 - sigma) * x0 + sigma * eps


def x0_from_flow(x_t: torch.Tensor, v: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Eq. (3): `x_0 = x_t - s v`."""
    return x_t - sigma * v


def eps_from_flow(x_t: torch.Tensor, v: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Eq. (4): `eps = x_t + (1 - s) v`."""
    return x_t + (1 - sigma) * v


def flow_from_x0(x_t: torch.Tensor, x0: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Eq. (5): `v = (x_t - x_0) / s`; undefined at `s = 0`."""
    if isinstance(sigma, torch.Tensor):
        if bool((sigma <= 0).any()):
            raise ValueError("flow_from_x0 needs sigma > 0 everywhere")
    elif sigma <= 0:
        raise ValueError(f"flow_from_x0 needs sigma > 0, got {sigma}")
    return (x_t - x0) / sigma
