"""The demo's generator: `CausalWanTransformer` plus a learned absolute position of each patch token.

Why the tiny stand-in needs it: Wan's only position signal is 3D RoPE, which is relative, and its patch
embedding is a stride-`p` convolution without padding, so from i.i.d. noise every token of a frame starts out
alike and a two-layer model cannot tell the frame centre from its edge. Real Wan learns placement from
millions of clips (attention can read where the frame ends from which relative offsets exist); the demo's
base sees 18 training clips for minutes and, without this, drew several token-sized squares at once. A
learned embedding per row, per column and per latent frame, added to the patch tokens, gives it the
position the world's composition depends on and the moment its motion depends on (RoPE's frame axis is
relative too).

It starts at zero, so a freshly built model computes exactly what `CausalWanTransformer` computes, and it
touches only the token embedding: masks, the KV cache, windows, sinks and RoPE are the parent's unchanged.

Legend: `b` batch, `f` latent frames, `hh ww` token grid, `l = f hh ww` tokens, `D` model width.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from rfvideo.models.causal_wan import CausalWanTransformer

__all__ = ["MAX_FRAMES", "MAX_GRID", "PositionedCausalWan"]

#: Largest token grid side the position tables cover (the demo's is 4 x 4).
MAX_GRID = 64
#: Latent frames with their own entry in the frame table; later frames share the last one (the demo's
#: clips have 3 latent frames, so a long `rfvideo serve` stream only repeats an untrained entry).
MAX_FRAMES = 64


class PositionedCausalWan(CausalWanTransformer):
    """`CausalWanTransformer(**config)` whose patch tokens get `frame[k] + row[i] + col[j]` added (learned,
    zero at init); `k` is the absolute latent frame index in every mode (full and block-causal: 0..f-1;
    cached: `frame_offset` on; `recache`: the held frames)."""

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        width = self.config.num_attention_heads * self.config.attention_head_dim
        self.pos_frame = nn.Parameter(torch.zeros(MAX_FRAMES, width))
        self.pos_row = nn.Parameter(torch.zeros(MAX_GRID, width))
        self.pos_col = nn.Parameter(torch.zeros(MAX_GRID, width))
        self._frame_index: torch.Tensor | None = None  # set by forward / recache for `_embed`

    @staticmethod
    def _get_init_keys(input_class: type) -> set[str]:
        # diffusers' from_pretrained / from_config keep the config keys that `__init__`'s signature names;
        # this one takes `**config` and hands it to the parent, so name the parent's keys.
        return CausalWanTransformer._get_init_keys(CausalWanTransformer)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        start = kwargs.get("frame_offset") if kwargs.get("attention_mode") == "cached" else None
        f = hidden_states.shape[2] // self.config.patch_size[0] if hidden_states.ndim == 5 else 0
        self._frame_index = torch.arange(f, device=self.pos_frame.device) + (start or 0)
        try:
            return super().forward(hidden_states, *args, **kwargs)
        finally:
            self._frame_index = None

    def recache(
        self, clean_latents: torch.Tensor, encoder_hidden_states: torch.Tensor, kv_cache: Any
    ) -> None:
        self._frame_index = torch.tensor(kv_cache.held_frames(), device=self.pos_frame.device)
        try:
            super().recache(clean_latents, encoder_hidden_states, kv_cache)
        finally:
            self._frame_index = None

    def _embed(
        self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, tproj, temb, text = super()._embed(hidden_states, timestep, encoder_hidden_states)
        _, ph, pw = self.config.patch_size
        hh, ww = hidden_states.shape[-2] // ph, hidden_states.shape[-1] // pw
        if hh > MAX_GRID or ww > MAX_GRID:
            raise ValueError(f"token grid {hh}x{ww} exceeds the position tables ({MAX_GRID}x{MAX_GRID})")
        f = x.shape[1] // (hh * ww)
        index = self._frame_index if self._frame_index is not None else torch.arange(f, device=x.device)
        if len(index) != f:
            raise ValueError(f"{len(index)} frame indices for {f} latent frames")
        frames = self.pos_frame[index.clamp(max=MAX_FRAMES - 1)]  # (f D)
        grid = self.pos_row[:hh, None] + self.pos_col[None, :ww]  # (hh ww D)
        pos = frames[:, None] + rearrange(grid, "hh ww d -> (hh ww) d")  # (f t D)
        x = rearrange(x, "b (f t) d -> b f t d", t=hh * ww) + pos.to(x.dtype)  # tokens: (frame, row, col)
        return rearrange(x, "b f t d -> b (f t) d"), tproj, temb, text
