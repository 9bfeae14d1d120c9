"""The demo's default VAE slot: a keyframe-in-time codec with Wan's latent layout.

Wan's VAE maps pixel frame 0 to latent frame 0 and pixel frames 4j-3 .. 4j to latent frame j, 8x smaller in
space. This codec keeps that layout with no learning: latent frame j holds pixel frame 4j (the last frame
of its group); each `p x p` pixel cell is either folded into channels ("fold": space-to-depth, nothing lost
in space, `3 p^2` channels) or kept as its mean colour ("mean": 3 channels, lossless for pictures drawn on
the `p`-pixel lattice, which the demo world's default clips are). Decoding unfolds (or repeats) the cells
and shows latent frame j for all four frames of its group. So a reconstruction has every frame sharp
(squares stay square) and moves in steps of four frames, and pixel rewards measure the generator, not a
codec. "mean" exists for the generator's sake: a token of 2 x 2 latent pixels carries 12 values instead of
192, so a 128-wide model has room for the prompt as well as the noise it must pass through; at the same
step count its base learned the world far better (scratch runs). (A tiny `AutoencoderKLWan` trained on the
clips is the alternative; on 2 shared CPU cores its training is too slow for the demo's minutes.)

Layout: latents are `(b c f h w)`, the generator's layout (the `WanVAE` contract).

Legend: `b` clips, `F` pixel frames (1 + 4k), `f` latent frames, `c` latent channels (3 p^2 or 3), `H W` pixel
size, `h w` latent size (H / p, W / p), `p` the spatial factor.
"""

from __future__ import annotations

import einops
import torch
from torch import nn

from rfvideo.models.vae import num_latent_frames, num_pixel_frames
from rfvideo.utils.saving import ConfigSaved

__all__ = ["KeyframeCodec"]


class KeyframeCodec(ConfigSaved, nn.Module):
    """`encode(video (b F 3 H W) in [0,1]) -> (b c f h w)`, `decode`, `decode_last`: the `WanVAE` contract.

    Args:
        spatial_factor: side `p` of the pixel cell one latent pixel stands for.
        temporal_factor: pixel frames per latent frame after the first (Wan: 4).
        cells: what a latent pixel holds of its `p x p` pixel cell: "fold" (every pixel, `c = 3 p^2`,
            lossless in space) or "mean" (the cell's mean colour, `c = 3`: lossless only for pictures drawn
            on the `p`-pixel lattice, as the demo world is, and a 16x narrower token for the generator).
        latents_std: the latents are the pixels in [-1, 1] divided by this, as Wan's VAE divides by its
            `latents_std`: the generator's flow-matching loss weighs content against noise by the latents'
            variance, and a grey frame with one square has a pixel std of about 1/4 (the demo's value), so
            unscaled latents would leave the content a 1/16 share of the loss.
    """

    def __init__(
        self,
        *,
        spatial_factor: int = 4,
        temporal_factor: int = 4,
        cells: str = "fold",
        latents_std: float = 1.0,
    ) -> None:
        super().__init__()
        if spatial_factor < 1 or temporal_factor < 1:
            raise ValueError(
                f"factors must be >= 1, got spatial {spatial_factor}, temporal {temporal_factor}"
            )
        if not latents_std > 0:
            raise ValueError(f"latents_std must be > 0, got {latents_std}")
        if cells not in ("fold", "mean"):
            raise ValueError(f"cells must be 'fold' or 'mean', got {cells!r}")
        self.register_config(
            spatial_factor=spatial_factor,
            temporal_factor=temporal_factor,
            cells=cells,
            latents_std=latents_std,
        )
        self.latents_std = float(latents_std)
        self.spatial_factor, self.temporal_factor, self.cells = spatial_factor, temporal_factor, cells
        self.latent_channels = 3 * spatial_factor**2 if cells == "fold" else 3
        # No weights, but callers read a VAE's dtype from its first parameter: an empty, frozen one.
        self.dtype_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def train(self, mode: bool = True) -> KeyframeCodec:
        """No-op: a frozen part stays in eval mode whatever Lightning asks."""
        return super().train(False)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """`(b F 3 H W)` in [0, 1] -> latents `(b c f h w)` in [-1, 1] / `latents_std`: frames 0, 4, 8, ...
        folded."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (b F 3 H W), got shape {tuple(video.shape)}")
        num_latent_frames(video.shape[1], self.temporal_factor)  # validates F = 1 + 4k
        p = self.spatial_factor
        if video.shape[-2] % p or video.shape[-1] % p:
            raise ValueError(f"video height/width must be divisible by {p}, got {tuple(video.shape[-2:])}")
        keys = (video[:, :: self.temporal_factor] * 2 - 1) / self.latents_std  # (b f 3 H W)
        if self.cells == "mean":
            return einops.reduce(keys, "b f c (h p) (w q) -> b c f h w", "mean", p=p, q=p)
        return einops.rearrange(keys, "b f c (h p) (w q) -> b (c p q) f h w", p=p, q=p)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents `(b c f h w)` -> video `(b F 3 H W)` in [0, 1], F = 1 + 4(f - 1)."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"latents must be (b c f h w) with c={self.latent_channels}, got {tuple(latents.shape)}"
            )
        p = self.spatial_factor
        x = latents * self.latents_std
        if self.cells == "mean":  # nearest upsampling: the cell's mean colour on all its pixels
            frames = einops.repeat(x, "b c f h w -> b f c (h p) (w q)", p=p, q=p)
        else:
            frames = einops.rearrange(x, "b (c p q) f h w -> b f c (h p) (w q)", p=p, q=p)
        # latent 0 -> pixel frame 0; latent j > 0 -> its four pixel frames 4j-3 .. 4j
        reps = torch.full((frames.shape[1],), self.temporal_factor, device=frames.device)
        reps[0] = 1
        video = torch.repeat_interleave(frames, reps, dim=1)
        return ((video.clamp(-1, 1) + 1) / 2).to(latents.dtype)

    def decode_last(
        self, latents: torch.Tensor, num_frames: int = 1, *, checkpoint: bool = False
    ) -> torch.Tensor:
        """The last `num_frames` pixel frames of `decode(latents)`, same value and gradient (`checkpoint`
        is accepted for the `WanVAE` signature; decoding here stores nothing worth recomputing)."""
        total = num_pixel_frames(latents.shape[2], self.temporal_factor)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= total:
            raise ValueError(f"num_frames must be an int in [1, {total}], got {num_frames!r}")
        return self.decode(latents)[:, -num_frames:]
