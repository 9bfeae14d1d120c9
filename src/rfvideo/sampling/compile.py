"""Opt-in compiled cached inference: `torch.compile` of the attention-free halves of every block.

What is compiled: per block, `self_attention_qkv` (adaLN modulation, Q/K/V projections, RMS norms, query
RoPE) and `residual_cross_ffn` (output projection and gate, cross-attention, feed-forward), with static
shapes. Their shapes are the same for every chunk of a video (a chunk always has `k` frames), so one
compilation serves every chunk and, since the blocks share their code, every layer. The self-attention
itself (one SDPA call over the cache slice, whose length grows with a global cache) and the cache
bookkeeping stay eager, so nothing recompiles as the cache fills. On CUDA the default mode is
"reduce-overhead" (CUDA graphs of those static-shape halves).

Legend: `b` batch, `l` tokens, `D` width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["compile_cached", "uncompile"]

_COMPILED = ("self_attention_qkv", "residual_cross_ffn")


def _probe(backend: str | Callable[..., Any], mode: str | None, device: torch.device) -> None:
    """Compile and run a two-op function, so that a missing compiler fails here with a clear message."""

    def tiny(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x * 2.0 + 1.0)

    try:
        fn = torch.compile(tiny, backend=backend, mode=mode, dynamic=False)
        x = torch.randn(4, 8, device=device, generator=None)
        torch.testing.assert_close(fn(x), tiny(x))
    except Exception as err:  # noqa: BLE001 - any compiler failure becomes one message
        # dynamo wraps the compiler's own error; name that one
        cause = getattr(err, "inner_exception", None) or err.__cause__ or err
        text = str(cause).strip()
        first = f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"
        raise RuntimeError(
            f"torch.compile(backend={backend!r}, mode={mode!r}) cannot compile on {device}: {first}; "
            "run the model eagerly (skip compile_cached) or pick another backend"
        ) from err
    finally:
        torch._dynamo.reset()


def compile_cached(
    model: Any,
    *,
    backend: str | Callable[..., Any] = "inductor",
    mode: str | None = "auto",
    check: bool = True,
) -> Any:
    """Compile `model`'s blocks in place for inference (static shapes); returns the model.

    The result equals eager within float tolerance (the compiler may fuse and reorder float ops).
    Call `uncompile(model)` to go back to eager.

    Args:
        model: a `CausalWanTransformer`.
        backend: a `torch.compile` backend name (see `torch._dynamo.list_backends()`) or callable.
        mode: `torch.compile` mode; "auto" = "reduce-overhead" (CUDA graphs) on CUDA, the default
            mode elsewhere; None = the default mode.
        check: compile and run a tiny function first, so that a missing compiler raises here.

    Raises:
        ValueError: an unknown backend name or mode.
        RuntimeError: the backend cannot compile on the model's device (the message says which).
    """
    if isinstance(backend, str) and backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise ValueError(
            f"unknown torch.compile backend {backend!r}; available: {torch._dynamo.list_backends()}"
        )
    modes = ("auto", None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}")
    device = next(model.parameters()).device
    if mode == "auto":
        mode = "reduce-overhead" if device.type == "cuda" else None
    if check:
        _probe(backend, mode, device)
    for block in model.blocks:
        for name in _COMPILED:
            method = getattr(type(block), name).__get__(block)
            # an instance attribute shadows the class method; `uncompile` deletes it
            setattr(block, name, torch.compile(method, backend=backend, mode=mode, dynamic=False))
    return model


def uncompile(model: Any) -> Any:
    """Undo `compile_cached` (the blocks run eagerly again); returns the model."""
    for block in model.blocks:
        for name in _COMPILED:
            block.__dict__.pop(name, None)
    return model
