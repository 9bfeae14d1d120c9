"""The streaming decoder of any VAE: its own `stream_decoder()` when it has one (`WanVAE`), else an exact
fallback built on `decode_last` that keeps the latents decoded so far (memory grows with the video).

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent height/width, `F` pixel frames.
"""

from __future__ import annotations

from typing import Any

import torch

from rfvideo.models.vae import num_pixel_frames

__all__ = ["HistoryStreamDecoder", "stream_decoder_for"]


class HistoryStreamDecoder:
    """Chunk-by-chunk decode through `vae.decode_last(all latents so far, new pixel frames)`.

    Exact for any VAE whose `decode_last` equals the tail of `decode` (the `WanVAE` contract), but every
    call decodes the whole history again unless the VAE is frame-local; prefer `vae.stream_decoder()`.
    """

    def __init__(self, vae: Any) -> None:
        self.vae = vae
        self.temporal_factor = int(getattr(vae, "temporal_factor", 4))
        self.reset()

    def reset(self) -> None:
        self._latents: torch.Tensor | None = None
        self.next_frame = 0

    def cache_bytes(self) -> int:
        t = self._latents
        return 0 if t is None else t.numel() * t.element_size()

    @torch.no_grad()
    def __call__(self, chunk_latents: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor:
        """Pixels `(b F 3 H W)` of the chunk `(b c f h w)`; a given `frame_offset` must be the next frame."""
        if frame_offset is not None and frame_offset != self.next_frame:
            raise ValueError(
                f"chunk out of order: frame_offset={frame_offset!r}, the next latent frame to decode is "
                f"{self.next_frame}"
            )
        lat = chunk_latents if self._latents is None else torch.cat([self._latents, chunk_latents], dim=2)
        total = num_pixel_frames(lat.shape[2], self.temporal_factor)
        before = (
            0 if self._latents is None else num_pixel_frames(self._latents.shape[2], self.temporal_factor)
        )
        out = self.vae.decode_last(lat, total - before)
        self._latents = lat
        self.next_frame = lat.shape[2]
        return out


def stream_decoder_for(vae: Any) -> Any:
    """`vae.stream_decoder()` if the VAE has one, else a `HistoryStreamDecoder` over it."""
    make = getattr(vae, "stream_decoder", None)
    return make() if callable(make) else HistoryStreamDecoder(vae)
