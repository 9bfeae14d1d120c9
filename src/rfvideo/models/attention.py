"""Attention of the chunk-wise causal generator: which frames a frame sees (`frame_visibility`), the
token-level mask built from that once per forward (`build_attention_mask`), and the softmax attention
that runs it through SDPA or flex attention (`attention`).

Shapes (einops): `f` latent frames (`f'` key frames), `T` tokens per latent frame, `l` tokens (`l'` key
tokens), `b` batch, `H` heads, `d` head dim.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rfvideo.models.causal_options import ATTENTION_BACKENDS, CausalOptions

__all__ = ["attention", "build_attention_mask", "frame_visibility", "resolve_backend"]

_compiled_flex: Any = None


def frame_visibility(
    num_frames: int,
    options: CausalOptions,
    *,
    device: torch.device | None = None,
    frame_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block-causal frame mask `(f f)` of `options`, True = query frame i may attend key frame j.

    With `k = num_frames_per_chunk`, `W = local_attn_size`, `S = sink_size`: frame i in the chunk ending
    at e sees j < e, restricted (when W != -1) to the sinks j < S and the last W - S frames
    j >= e - (W - S) (`CausalOptions.window_frames`). `frame_index` `(f,)` gives the frames' absolute
    indices (default `0..f-1`; `recache` passes the held frames, which need not be contiguous).
    """
    i = torch.arange(num_frames, device=device) if frame_index is None else frame_index.to(device)
    k = options.num_frames_per_chunk
    end = (i // k + 1) * k
    j = i
    vis = j[None, :] < end[:, None]
    win = options.window_frames
    if win is not None:
        vis = vis & ((j[None, :] < options.sink_size) | (j[None, :] >= end[:, None] - win))
    return vis


def resolve_backend(attention_backend: str) -> str:
    """The backend a mask is built for: "sdpa" or "flex" as asked; "auto" is SDPA (flex attention stays
    opt-in until it is benchmarked against SDPA on the target GPU).

    Raises:
        ValueError: `attention_backend` is not one of `ATTENTION_BACKENDS`.
    """
    if attention_backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {attention_backend!r}")
    return "sdpa" if attention_backend == "auto" else attention_backend


def build_attention_mask(frame_mask: torch.Tensor, tokens_per_frame: int, backend: str) -> Any:
    """Token-level mask from a frame mask `(f f')`, built once per forward and shared by every layer:
    a dense boolean `(l l')` for "sdpa", or a flex-attention `BlockMask` for "flex"."""
    T = tokens_per_frame
    if backend == "flex":
        from torch.nn.attention.flex_attention import create_block_mask

        fm = frame_mask

        def mask_mod(b, h, qi, ki):  # noqa: ANN001, ANN202 - flex signature
            return fm[qi // T, ki // T]

        lq, lk = fm.shape[0] * T, fm.shape[1] * T
        return create_block_mask(mask_mod, None, None, lq, lk, device=str(fm.device))
    return frame_mask.repeat_interleave(T, 0).repeat_interleave(T, 1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any = None) -> torch.Tensor:
    """Softmax attention of `q (b l H d)` over `k, v (b l' H d)`.

    `mask`: None, a dense boolean `(l l')` (True = attend; SDPA) or a flex-attention `BlockMask`.
    """
    global _compiled_flex
    qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
    if mask is not None and not isinstance(mask, torch.Tensor):
        from torch.nn.attention.flex_attention import flex_attention

        fn = flex_attention
        if qh.is_cuda:
            # flex attention is only fused (memory-efficient) when compiled
            if _compiled_flex is None:
                _compiled_flex = torch.compile(flex_attention, dynamic=False)
            fn = _compiled_flex
        out = fn(qh, kh, vh, block_mask=mask)
    else:
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2)
