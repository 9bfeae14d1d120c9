"""The demo's fixed linear video codec: a stand-in for the Wan VAE whose pixels have a checkable meaning.

An untrained tiny `AutoencoderKLWan` decodes to near-constant grey (its pixels mean nothing) and training
one on 2 CPU cores costs minutes; a pixel-space reward scored on such a decoder measures nothing. The demo
therefore swaps the VAE for this codec, which keeps the VAE's interface and Wan's *layout* exactly:

* temporal: Wan's causal 1 + 4k layout: latent frame 0 <- pixel frame 0; latent frame j >= 1 <- the mean
  of pixel frames 4j-3 .. 4j;
* spatial: `spatial_factor x spatial_factor` average pooling;
* channels: RGB mapped to [-1, 1], then a fixed 3 -> c linear map (identity on the first 3 channels,
  zero padding channels when the generator wants more), then per-channel normalisation;
* decode: the pseudo-inverse: un-normalise, the first 3 channels as RGB, nearest upsampling in space and
  repetition over the 4 pixel frames of each latent frame, clamp to [0, 1] (as Wan's decode clamps).

Decoding is frame-local, so `decode_last` is exact and differentiable: it decodes only the trailing latent
frames it needs. The real Wan VAE path (`rfvideo.models.vae.WanVAE`) is exercised by its own tests.

Legend: `b` batch, `F` pixel frames, `f` latent frames, `c` latent channels, `H W` pixel size,
`h w` latent size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from rfvideo.models.vae import latent_frames_for_pixel_frames, num_latent_frames, num_pixel_frames
from rfvideo.utils.saving import ConfigSaved

__all__ = ["PoolingVideoCodec"]


class PoolingVideoCodec(ConfigSaved, nn.Module):
    """Fixed (frozen, data-independent) linear codec with `WanVAE`'s interface: `(b F 3 H W) <-> (b f c h w)`.

    Args:
        latent_channels: latent channels c >= 3 (RGB + zero padding channels).
        spatial_factor: pooling window (Wan: 8).
        temporal_factor: pixel frames per latent frame after the first (Wan: 4).
        latents_mean: per-channel mean of the raw latents (normalisation); default 0.
        latents_std: per-channel std of the raw latents; default 1.
    """

    def __init__(
        self,
        *,
        latent_channels: int = 3,
        spatial_factor: int = 8,
        temporal_factor: int = 4,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ) -> None:
        super().__init__()
        if latent_channels < 3:
            raise ValueError(f"latent_channels must be >= 3 (RGB), got {latent_channels}")
        if spatial_factor < 1 or temporal_factor < 1:
            raise ValueError(
                f"factors must be >= 1, got spatial {spatial_factor}, temporal {temporal_factor}"
            )
        self.register_config(
            latent_channels=latent_channels, spatial_factor=spatial_factor, temporal_factor=temporal_factor
        )  # mean / std are buffers (set_statistics changes them): model.safetensors carries them
        self.latent_channels = int(latent_channels)
        self.spatial_factor = int(spatial_factor)
        self.temporal_factor = int(temporal_factor)
        mean = latents_mean if latents_mean is not None else [0.0] * latent_channels
        std = latents_std if latents_std is not None else [1.0] * latent_channels
        if len(mean) != latent_channels or len(std) != latent_channels or min(std) <= 0:
            raise ValueError(f"latents_mean/std need {latent_channels} entries (std > 0), got {mean}, {std}")
        # The fixed RGB -> latent map, a frozen parameter: modules read the VAE's dtype from its parameters.
        proj = torch.zeros(latent_channels, 3)
        proj[:3] = torch.eye(3)
        self.proj = nn.Parameter(proj, requires_grad=False)
        self.register_buffer("latents_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("latents_std", torch.tensor(std, dtype=torch.float32))

    def train(self, mode: bool = True) -> PoolingVideoCodec:
        """No-op: the codec is frozen."""
        return super().train(False)

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the normalisation `(c,)` (raw latent statistics of the data); padding channels keep std 1."""
        with torch.no_grad():
            self.latents_mean.copy_(mean)
            self.latents_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def _stats(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, 1, -1, 1, 1)  # broadcast over (b f c h w)
        return (
            self.latents_mean.to(ref.device, ref.dtype).view(shape),
            self.latents_std.to(ref.device, ref.dtype).view(shape),
        )

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video `(b F 3 H W)` in [0, 1] (F = 1 + 4k, H W divisible by the factor) -> `(b c f h w)`."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (b F 3 H W), got shape {tuple(video.shape)}")
        num_latent_frames(video.shape[1], self.temporal_factor)  # validates F
        H, W = video.shape[-2:]
        if H % self.spatial_factor or W % self.spatial_factor:
            raise ValueError(f"video height/width must be divisible by {self.spatial_factor}, got {H}x{W}")
        x = video.to(self.proj.dtype) * 2.0 - 1.0
        b = x.shape[0]
        pooled = F.avg_pool2d(rearrange(x, "b F C H W -> (b F) C H W"), self.spatial_factor)
        pooled = rearrange(pooled, "(b F) C h w -> b F C h w", b=b)
        # Causal temporal grouping: frame 0 alone, then groups of `temporal_factor`.
        rest = rearrange(pooled[:, 1:], "b (f t) C h w -> b f t C h w", t=self.temporal_factor).mean(2)
        grouped = torch.cat([pooled[:, :1], rest], dim=1)  # (b f 3 h w)
        z = torch.einsum("bfrhw,cr->bfchw", grouped, self.proj)
        mean, std = self._stats(z)
        return rearrange((z - mean) / std, "b f c h w -> b c f h w")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"latents must be (b c f h w) with c={self.latent_channels}, got shape {tuple(latents.shape)}"
            )

    def _decode_frames(self, latents: torch.Tensor, first_is_frame0: bool) -> torch.Tensor:
        """Latent frames `(b f c h w)` -> pixel frames (1 for frame 0, else `temporal_factor` each)."""
        mean, std = self._stats(latents)
        z = latents * std + mean
        rgb = torch.einsum("bfchw,cr->bfrhw", z, self.proj)  # pseudo-inverse of the identity embedding
        rgb = rgb.repeat_interleave(self.spatial_factor, -2).repeat_interleave(self.spatial_factor, -1)
        reps = torch.full((rgb.shape[1],), self.temporal_factor, device=rgb.device, dtype=torch.long)
        if first_is_frame0:
            reps[0] = 1
        video = rgb.repeat_interleave(reps, dim=1)
        return ((video.clamp(-1.0, 1.0) + 1.0) / 2.0).to(latents.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents `(b c f h w)` -> video `(b F 3 H W)` in [0, 1], F = 1 + 4(f - 1)."""
        self._check_latents(latents)
        return self._decode_frames(rearrange(latents, "b c f h w -> b f c h w"), first_is_frame0=True)

    def decode_last(
        self, latents: torch.Tensor, num_frames: int = 1, *, checkpoint: bool = False
    ) -> torch.Tensor:
        """The last `num_frames` pixel frames, equal to `decode(latents)[:, -num_frames:]`.

        Decoding is frame-local, so only the trailing latent frames that cover those pixel frames are
        decoded; the gradient reaches exactly those latent frames. `checkpoint` is accepted for interface
        compatibility with `WanVAE.decode_last` (nothing worth recomputing here).
        """
        self._check_latents(latents)
        total = num_pixel_frames(latents.shape[2], self.temporal_factor)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= total:
            raise ValueError(f"num_frames must be an int in [1, {total}], got {num_frames!r}")
        start = latent_frames_for_pixel_frames([total - num_frames], total, self.temporal_factor)[0]
        video = self._decode_frames(
            rearrange(latents[:, :, start:], "b c f h w -> b f c h w"), first_is_frame0=start == 0
        )
        return video[:, -num_frames:]
