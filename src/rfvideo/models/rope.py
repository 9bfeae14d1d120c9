"""Wan's 3-D rotary position embedding: the tables (`WanRope`) and the rotation (`apply_rope`).

Shapes (einops): `f` latent frames, `l` tokens ordered (frame, row, col), `b` batch, `H` heads,
`d` head dim.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.models.embeddings import get_1d_rotary_pos_embed

__all__ = ["WanRope", "apply_rope"]


class WanRope(nn.Module):
    """3-D RoPE tables of Wan: the head dim splits into t/h/w parts (h = w = 2 * (d // 6)), each a
    1-D table over `max_seq_len` positions; pairs (2i, 2i+1) rotate together (interleaved)."""

    def __init__(self, attention_head_dim: int, max_seq_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.h_dim = self.w_dim = 2 * (attention_head_dim // 6)
        self.t_dim = attention_head_dim - 2 * self.h_dim
        self.max_seq_len = max_seq_len
        cos, sin = [], []
        for dim in (self.t_dim, self.h_dim, self.w_dim):
            c, s = get_1d_rotary_pos_embed(
                dim, max_seq_len, theta, use_real=True, repeat_interleave_real=True, freqs_dtype=torch.float64
            )
            cos.append(c)
            sin.append(s)
        # Non-persistent: no state-dict keys, exactly like diffusers' `rope`.
        self.register_buffer("freqs_cos", torch.cat(cos, dim=1), persistent=False)
        self.register_buffer("freqs_sin", torch.cat(sin, dim=1), persistent=False)

    def forward(self, frame_pos: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin `(l d)` for tokens ordered (frame, row, col) with frames at positions `frame_pos (f,)`.

        Raises:
            ValueError: a position is past the table (`max_seq_len`).
        """
        if int(frame_pos.max()) >= self.max_seq_len:
            raise ValueError(
                f"latent frame position {int(frame_pos.max())} is past the RoPE table (rope_max_seq_len="
                f"{self.max_seq_len}); use rope_mode='relative' with a rolling window for longer videos"
            )
        split = [self.t_dim, self.h_dim, self.w_dim]
        f = frame_pos.numel()
        out = []
        for table in (self.freqs_cos, self.freqs_sin):
            t_tab, h_tab, w_tab = table.split(split, dim=1)
            tt = t_tab[frame_pos.to(table.device)].view(f, 1, 1, -1).expand(f, height, width, -1)
            hh = h_tab[:height].view(1, height, 1, -1).expand(f, height, width, -1)
            ww = w_tab[:width].view(1, 1, width, -1).expand(f, height, width, -1)
            out.append(torch.cat([tt, hh, ww], dim=-1).reshape(f * height * width, -1))
        return out[0], out[1]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of `x (b l H d)` by the angles in `cos, sin (l d)`."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    c = cos[:, None, 0::2].float()
    s = sin[:, None, 1::2].float()
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)
