"""The decoder slot: what the pipeline, training (`decode_last`), streaming and serving ask of a decoder.

Every decoder that can sit in the pipeline's `vae` slot (the Wan VAE, LightVAE, `TinyVideoDecoder` for
taew2_1 / lighttaew2_1, the demo's codecs) satisfies `VideoDecoder`; its `stream_decoder()` returns a
`StreamDecoder`. The input is always the generator's latent space (the *normalised* Wan latent): a decoder
that wants raw latents converts inside. Pixel <-> latent frame arithmetic lives in
`rfvideo.models.vae.num_pixel_frames` / `num_latent_frames`.

Legend: `b` batch, `c` latent channels, `f` latent frames, `h w` latent height/width, `F` pixel frames
(1 + 4 (f - 1) for a whole video), `H W` pixel height/width.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["StreamDecoder", "VideoDecoder"]


@runtime_checkable
class StreamDecoder(Protocol):
    """Chunk-by-chunk decode of one video (a batch of videos), equal to the full decode of the whole.

    `dec(chunk (b c f h w))` returns `1 + 4 (f - 1)` pixel frames for the first chunk and `4 f` for every
    later one, `(b F 3 H W)` in [0, 1]; a given `frame_offset` must be the number of latent frames decoded
    so far (else `ValueError`); `reset()` starts a new video; `cache_bytes()` is the state carried between
    calls.
    """

    def __call__(self, chunk: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor: ...

    def reset(self) -> None: ...

    def cache_bytes(self) -> int: ...


@runtime_checkable
class VideoDecoder(Protocol):
    """A latent video decoder in the pipeline's `vae` slot (an `nn.Module` in practice).

    Attributes:
        temporal_factor: Pixel frames per latent frame after the first (4).
        spatial_factor: Pixels per latent cell along height and width (8 for Wan).
        latent_channels: `c` of the latents it takes (16 for Wan2.1).
    """

    temporal_factor: int
    spatial_factor: int
    latent_channels: int

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (b c f h w) -> video (b F 3 H W) in [0, 1], F = 1 + 4 (f - 1)."""
        ...

    def decode_last(
        self, latents: torch.Tensor, num_frames: int = 1, *, checkpoint: bool = False
    ) -> torch.Tensor:
        """The last `num_frames` pixel frames of `decode(latents)`, exact and differentiable."""
        ...

    def stream_decoder(self) -> StreamDecoder:
        """A fresh `StreamDecoder` over this decoder."""
        ...
