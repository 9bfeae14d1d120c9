"""Peak live bytes of one generator training step (forward, backward, AdamW), on fake or real tensors.

The same procedure runs under `FakeTensorMode` (no memory is allocated: shapes, dtypes and lifetimes only)
and on real CPU tensors; torch's `MemTracker` (a TorchDispatchMode that follows every storage until it is
freed) counts live bytes identically in both, which is how the estimate is validated against a measurement.

Shapes: b batch, c latent channels, f latent frames of the gradient chunk, h w latent height/width,
n text tokens, d text width.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["StepPeak", "generator_step_peak"]


@dataclass(frozen=True)
class StepPeak:
    """Peak live bytes of one step, split by what MemTracker saw at the peak."""

    total: int
    params: int
    grads: int
    optimizer: int
    activations: int
    """Peak of forward + backward beyond weights and optimizer state (saved activations, temporaries,
    inputs, and the gradients produced by then); `total` is the peak of the whole step."""


def _shape_only_rope(rope: nn.Module) -> None:
    """Make `rope(frame_pos, h, w)` shape-only: its range check reads a value (`int(max)`), which fake tensors
    cannot; the tables it returns have the same shape and dtype, so the counted bytes are unchanged."""
    cos_table = rope.freqs_cos

    def forward(frame_pos: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, d = frame_pos.numel() * height * width, cos_table.shape[1]
        shape = (n, d)
        return (
            torch.empty(shape, dtype=cos_table.dtype, device=cos_table.device),
            torch.empty(shape, dtype=cos_table.dtype, device=cos_table.device),
        )

    rope.forward = forward  # type: ignore[method-assign]


def _run_step(
    build: Any, latent_shape: tuple[int, ...], text_shape: tuple[int, ...], *, checkpointing: bool,
    autocast_dtype: torch.dtype | None, fake: bool, seed: int,
) -> StepPeak:  # fmt: skip
    from torch.distributed._tools.mem_tracker import MemTracker

    gen = torch.Generator().manual_seed(seed)
    model: nn.Module = build()
    if fake:
        _shape_only_rope(model.rope)
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    amp = torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None else None

    def forward_backward() -> None:
        x = torch.randn(latent_shape, generator=None if fake else gen)
        emb = torch.randn(text_shape, generator=None if fake else gen)
        t = torch.full((latent_shape[0],), 500.0)
        with amp if amp is not None else contextlib.nullcontext():
            out = model(x, t, emb, attention_mode="full")
        out.float().pow(2).mean().backward()

    def snapshot(tracker: MemTracker) -> dict[str, int]:
        stats = next(iter(tracker.get_tracker_snapshot("peak").values()))
        return {str(getattr(k, "value", k)): int(v) for k, v in stats.items()}

    # A first step creates AdamW's moments, so the counted step is a steady-state one.
    forward_backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    fb = MemTracker()
    fb.track_external(model, opt)
    with fb:  # activations: what forward + backward hold beyond weights, gradients and optimizer state
        forward_backward()
    by = snapshot(fb)
    # Gradients already produced at that moment stay in: they are the step's peak, not the final gradients'.
    act = by["Total"] - by.get("Parameter", 0) - by.get("Optstate", 0)
    opt.zero_grad(set_to_none=True)
    whole = MemTracker()
    whole.track_external(model, opt)
    with whole:  # the measured peak of a full step
        forward_backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    by = snapshot(whole)
    params, grads, optim = by.get("Parameter", 0), by.get("Gradient", 0), by.get("Optstate", 0)
    total = by["Total"]
    return StepPeak(total, params, grads, optim, act)


def generator_step_peak(
    build: Any,
    latent_shape: tuple[int, int, int, int, int],
    text_shape: tuple[int, int, int],
    *,
    checkpointing: bool = False,
    autocast_dtype: torch.dtype | None = None,
    fake: bool = True,
    seed: int = 0,
) -> StepPeak:
    """Peak live bytes of forward + backward + AdamW step of the generator on one chunk.

    Args:
        build: zero-argument callable returning the generator (called under FakeTensorMode when `fake`).
        latent_shape: `(b c f h w)` of the chunk that carries the gradient.
        text_shape: `(b n d)` of the prompt embeddings.
        checkpointing: activation checkpointing on every block.
        autocast_dtype: the mixed-precision compute dtype (bf16 for `bf16-mixed`), None for fp32.
        fake: count on fake tensors (nothing allocated) instead of real CPU tensors.
        seed: seeds the real inputs.

    Returns:
        The peak, split into parameters, gradients, optimizer state and the rest (activations).
    """
    if len(latent_shape) != 5 or len(text_shape) != 3:
        raise ValueError(
            f"latent_shape {latent_shape} must be (b c f h w) and text_shape {text_shape} (b n d)"
        )
    if not fake:
        return _run_step(
            build, latent_shape, text_shape, checkpointing=checkpointing, autocast_dtype=autocast_dtype,
            fake=False, seed=seed,
        )  # fmt: skip
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        return _run_step(
            build, latent_shape, text_shape, checkpointing=checkpointing, autocast_dtype=autocast_dtype,
            fake=True, seed=seed,
        )  # fmt: skip
