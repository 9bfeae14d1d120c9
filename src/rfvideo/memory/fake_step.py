"""Peak live bytes of one generator training step (forward, backward, AdamW), on fake or real tensors.

The same procedure runs under `FakeTensorMode` (no memory is allocated: shapes, dtypes and lifetimes only)
and on real CPU tensors; torch's `MemTracker` (a TorchDispatchMode that follows every storage until it is
freed) counts live bytes identically in both, which is how the estimate is validated against a measurement.

MemTracker revisits every live storage at every op, so one step costs ~(ops x storages): quadratic in the
depth. `depth_extrapolated_peak` therefore counts the step on 2 and 3 blocks and extends the line to the
full depth (the blocks are identical, so every byte count is affine in the block count; the tests check
the extrapolation against a direct count).

Shapes: b batch, c latent channels, f latent frames of the gradient chunk, h w latent height/width,
n text tokens, d text width.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

__all__ = ["LORA_TARGETS", "StepPeak", "add_lora", "depth_extrapolated_peak", "generator_step_peak"]

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
"""The agreed LoRA targets: attention q/k/v/o (self and cross) and the FFN linears of every Wan block."""


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


def add_lora(model: nn.Module, rank: int) -> nn.Module:
    """LoRA adapters of `rank` on `LORA_TARGETS`, only they trainable (`rfvideo.models.lora` when present).

    Raises:
        ValueError: rank <= 0.
    """
    if rank <= 0:
        raise ValueError(f"LoRA rank {rank} must be > 0")
    try:
        from rfvideo.models.lora import LoraOptions, apply_lora
    except ImportError:  # engineer B's module not on main yet: the same adapters through peft directly
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
        model = inject_adapter_in_model(cfg, model)
    else:
        model = apply_lora(model, LoraOptions(rank=rank))
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


@contextlib.contextmanager
def _adapters_stay_put() -> Any:
    """peft moves each new adapter (and replaced layer) to its base layer's device with `Module.to`, which
    fake parameters refuse (`swap_tensors`: they hold weak references); under FakeTensorMode everything is
    already on the fake CPU in its dtype (adapters fp32, peft's default), so `Module.to` is a no-op here."""
    from unittest import mock

    with mock.patch.object(nn.Module, "to", lambda self, *a, **k: self):
        yield


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


class _NoHook:
    def remove(self) -> None:
        pass


def _tracker(model: nn.Module, opt: torch.optim.Optimizer, *others: nn.Module) -> Any:
    """A MemTracker over `model` and `opt` that keeps the global peak only and leaves frozen parameters alone.

    MemTracker updates a peak per module at every op (a loop over all modules: most of a step's time at
    tiny size), and hooks the gradient of every parameter it meets, failing on one without `requires_grad`
    (LoRA's frozen base; `others`: frozen modules that run inside the tracked region, e.g. VAE and reward).
    The live-byte accounting itself is MemTracker's, unchanged.
    """
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

    class GlobalPeak(MemTracker):
        def _update_peak_stats(self, peak_state: Any) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                    self._peak_mem[dev] = snap[_TOTAL_KEY]
                    self._peak_mem_snap[dev] = dict(snap)

    tracker = GlobalPeak()
    for p in (p for m in (model, *others) for p in m.parameters()):
        if not p.requires_grad:
            tracker._param_to_grad_hook_handles[p] = (_NoHook(), _NoHook())
    tracker.track_external(model, opt)
    return tracker


def _snapshot(tracker: Any) -> dict[str, int]:
    stats = next(iter(tracker.get_tracker_snapshot("peak").values()))
    return {str(getattr(k, "value", k)): int(v) for k, v in stats.items()}


def _run_step(
    build: Callable[[], nn.Module], latent_shape: tuple[int, ...], text_shape: tuple[int, ...], *,
    checkpointing: bool, autocast_dtype: torch.dtype | None, fake: bool, seed: int, lora_rank: int | None,
) -> StepPeak:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    model: nn.Module = build()
    if lora_rank is not None:
        with _adapters_stay_put() if fake else contextlib.nullcontext():
            model = add_lora(model, lora_rank)
    if fake:
        _shape_only_rope(model.rope)
    if checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, foreach=False)
    amp = torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype is not None else None

    def forward_backward() -> None:
        x = torch.randn(latent_shape, generator=None if fake else gen)
        emb = torch.randn(text_shape, generator=None if fake else gen)
        t = torch.full((latent_shape[0],), 500.0)
        with amp if amp is not None else contextlib.nullcontext():
            out = model(x, t, emb, attention_mode="full")
        out.float().pow(2).mean().backward()

    # AdamW's moments exist from the first step on, so the counted step is a steady-state one; a step on
    # zero gradients creates them without a forward.
    for p in trainable:
        p.grad = torch.zeros_like(p)
    opt.step()
    opt.zero_grad(set_to_none=True)
    fb = _tracker(model, opt)
    with fb:  # activations: what forward + backward hold beyond weights and optimizer state
        forward_backward()
    by_fb = _snapshot(fb)
    # Gradients already produced at that moment stay in: they are the step's peak, not the final gradients'.
    act = by_fb["Total"] - by_fb.get("Parameter", 0) - by_fb.get("Optstate", 0)
    st = _tracker(model, opt)
    with st:  # the optimizer step, gradients present; the step's peak is the larger of the two
        opt.step()
        opt.zero_grad(set_to_none=True)
    by_st = _snapshot(st)
    by = by_fb if by_fb["Total"] >= by_st["Total"] else by_st
    params, grads, optim = by.get("Parameter", 0), by.get("Gradient", 0), by.get("Optstate", 0)
    return StepPeak(by["Total"], params, grads, optim, act)


def generator_step_peak(
    build: Callable[[], nn.Module],
    latent_shape: tuple[int, int, int, int, int],
    text_shape: tuple[int, int, int],
    *,
    checkpointing: bool = False,
    autocast_dtype: torch.dtype | None = None,
    fake: bool = True,
    seed: int = 0,
    lora_rank: int | None = None,
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
        lora_rank: train LoRA adapters of this rank on `LORA_TARGETS` only (None: full fine-tune).

    Returns:
        The peak, split into parameters, gradients, optimizer state and the rest (activations).
    """
    if len(latent_shape) != 5 or len(text_shape) != 3:
        raise ValueError(
            f"latent_shape {latent_shape} must be (b c f h w) and text_shape {text_shape} (b n d)"
        )
    if lora_rank is not None and lora_rank <= 0:
        raise ValueError(f"LoRA rank {lora_rank} must be > 0")
    kw = dict(checkpointing=checkpointing, autocast_dtype=autocast_dtype, seed=seed, lora_rank=lora_rank)
    if not fake:
        return _run_step(build, latent_shape, text_shape, fake=False, **kw)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        return _run_step(build, latent_shape, text_shape, fake=True, **kw)


def _with_blocks(build: Callable[[], nn.Module], n: int) -> Callable[[], nn.Module]:
    def truncated() -> nn.Module:
        model = build()
        model.blocks = model.blocks[:n]  # the forward loops over `self.blocks`
        return model

    return truncated


def depth_extrapolated_peak(
    build: Callable[[], nn.Module],
    num_blocks: int,
    latent_shape: tuple[int, int, int, int, int],
    text_shape: tuple[int, int, int],
    *,
    probe_blocks: tuple[int, int] = (2, 3),
    **kwargs: Any,
) -> StepPeak:
    """`generator_step_peak` of the `num_blocks`-block generator, counted on `probe_blocks` blocks.

    Every field is p(n0) + (num_blocks - n0) * (p(n1) - p(n0)) / (n1 - n0): the blocks are identical, so
    the saved activations, gradients and states grow by the same bytes per block. A model no deeper than
    the probes is counted directly.

    Args:
        build: zero-argument callable returning the full generator (`blocks` truncated for the probes).
        num_blocks: the generator's block count.
        latent_shape, text_shape, kwargs: as `generator_step_peak`.
        probe_blocks: two block counts n0 < n1 to count on.
    """
    n0, n1 = probe_blocks
    if not 0 < n0 < n1:
        raise ValueError(f"probe_blocks {probe_blocks} must be two increasing counts > 0")
    if num_blocks <= n1:
        return generator_step_peak(_with_blocks(build, num_blocks), latent_shape, text_shape, **kwargs)
    p0 = generator_step_peak(_with_blocks(build, n0), latent_shape, text_shape, **kwargs)
    p1 = generator_step_peak(_with_blocks(build, n1), latent_shape, text_shape, **kwargs)
    out = {}
    for f in fields(StepPeak):
        a, b = getattr(p0, f.name), getattr(p1, f.name)
        out[f.name] = a + (num_blocks - n0) * (b - a) // (n1 - n0)
    return StepPeak(**out)
