"""Frozen Wan causal 3D VAE: normalised encode/decode and an exact, differentiable last-frame decode.

Shapes (einops): `b` batch, `F` pixel frames (1 + 4k), `H W` pixel height/width, `f` latent frames
(1 + (F - 1) / 4), `c` latent channels, `h w` latent height/width (H / 8, W / 8).

The wrapper speaks the generator's (diffusers') `(b c f h w)` latents, so no caller rearranges at the
generator / VAE seam, and `(b F 3 H W)` video in [0, 1]; diffusers' `AutoencoderKLWan` itself speaks
`(b 3 F H W)` video in [-1, 1].

The Wan decoder is causal in time: it decodes one latent frame per call and carries, per causal
convolution, the last two input frames of that convolution in a feature cache. Latent frame 0 decodes
to pixel frame 0; latent frame j > 0 decodes to pixel frames 4j-3 .. 4j. So the last pixel frames need
only the cache state left by the earlier latent frames, which we build under `no_grad`; and a video can be
decoded chunk by chunk while it is generated (`WanVAE.stream_decoder`), carrying that cache between calls.

Through that cache the last pixel frame depends on many earlier latent frames: Wan2.1's decoder chains 32
causal convolutions of temporal kernel 3 (12 at latent rate, 7 at 2x, 13 at 4x after the time upsamplers),
so pixel frame 4(L-1) is computed from latent frames L-38 .. L-1, 37 frames back, more than a whole
21-latent-frame video (bench/vae_decode.py measures it). The exact `decode_last` therefore decodes the
whole prefix under `no_grad`; `context=K` (or `WanVAE(decode_context=K)`) trades that for an approximation
that restarts the decoder with a fresh cache K latent frames before the first needed one (bench/RESULTS.md
reports its error per K: large with random weights).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import einops
import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import CACHE_T, WanCausalConv3d, WanUpBlock, unpatchify
from torch import nn
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from rfvideo.utils.chunk_stream import check_chunk_continues

__all__ = [
    "WanStreamDecoder",
    "WanVAE",
    "latent_frames_for_pixel_frames",
    "num_latent_frames",
    "num_pixel_frames",
]

# Wan2.1's VAE: 4x temporal, 8x spatial compression. Kept as fallbacks for configs that predate
# diffusers' `scale_factor_*` keys.
_DEFAULT_TEMPORAL = 4
_DEFAULT_SPATIAL = 8

# `decode_last(context=...)` left out: use the VAE's `decode_context`. A string, not None, because an
# explicit `context=None` must mean the exact decode whatever the VAE's default is.
_VAE_DEFAULT: Literal["vae_default"] = "vae_default"


def _check_context(context: object, what: str) -> int | None:
    """`context` if it is None or a non-negative int (latent frames), else a one-line ValueError."""
    if context is None or (isinstance(context, int) and not isinstance(context, bool) and context >= 0):
        return context
    raise ValueError(f"{what} must be None (exact) or an int >= 0 (latent frames), got {context!r}")


def num_latent_frames(num_pixel_frames: int, temporal_factor: int = _DEFAULT_TEMPORAL) -> int:
    """Latent frames of a clip of `num_pixel_frames` (must be `1 + temporal_factor * k`)."""
    if (
        isinstance(num_pixel_frames, bool)
        or not isinstance(num_pixel_frames, int)
        or num_pixel_frames < 1
        or (num_pixel_frames - 1) % temporal_factor
    ):
        raise ValueError(
            f"pixel frame count must be 1 + {temporal_factor}k (1, {1 + temporal_factor}, "
            f"{1 + 2 * temporal_factor}, ...), got {num_pixel_frames!r}"
        )
    return 1 + (num_pixel_frames - 1) // temporal_factor


def num_pixel_frames(num_latent_frames: int, temporal_factor: int = _DEFAULT_TEMPORAL) -> int:
    """Pixel frames decoded from `num_latent_frames` latent frames."""
    if isinstance(num_latent_frames, bool) or not isinstance(num_latent_frames, int) or num_latent_frames < 1:
        raise ValueError(f"latent frame count must be a positive int, got {num_latent_frames!r}")
    return 1 + temporal_factor * (num_latent_frames - 1)


def latent_frames_for_pixel_frames(
    pixel_frames: Sequence[int], num_pixel_frames: int, temporal_factor: int = _DEFAULT_TEMPORAL
) -> list[int]:
    """The latent frames whose decode produces the selected pixel frames (sorted, unique).

    Pixel frame 0 comes from latent frame 0; pixel frame p > 0 from latent frame `ceil(p / 4)`,
    i.e. latent j > 0 owns pixel frames 4j-3 .. 4j. Negative indices count from the end.

    Args:
        pixel_frames: Indices into the `num_pixel_frames` pixel frames.
        num_pixel_frames: Total pixel frames of the clip (1 + 4k).
        temporal_factor: The VAE's temporal compression (4 for Wan2.1).

    Returns:
        Sorted latent frame indices. Decoding causally needs every earlier latent frame as
        context too, but only these need to be decoded with grad.
    """
    num_latent_frames(num_pixel_frames, temporal_factor)  # validates the count
    out: set[int] = set()
    for p in pixel_frames:
        if isinstance(p, bool) or not isinstance(p, int) or not -num_pixel_frames <= p < num_pixel_frames:
            raise ValueError(f"pixel frame index {p!r} out of range for {num_pixel_frames} frames")
        p = p % num_pixel_frames
        out.add(0 if p == 0 else (p + temporal_factor - 1) // temporal_factor)
    return sorted(out)


def _causal_conv(conv: WanCausalConv3d, x: torch.Tensor, cache: list[Any], idx: list[int]) -> torch.Tensor:
    """A cached causal convolution exactly as diffusers' Wan decoder runs it: the conv sees the cached
    last input frames as its left context, then the cache keeps this call's last `CACHE_T` input frames
    (topped up with the previous cache's last frame when the call had fewer)."""
    i = idx[0]
    new_cache = x[:, :, -CACHE_T:].clone()
    if new_cache.shape[2] < CACHE_T and cache[i] is not None:
        new_cache = torch.cat([cache[i][:, :, -1:].to(new_cache.device), new_cache], dim=2)
    out = conv(x, cache[i])
    cache[i] = new_cache
    idx[0] += 1
    return out


def _checkpoint_cached(
    fn: Any, x: torch.Tensor, cache: list[Any], idx: list[int], **kwargs: Any
) -> torch.Tensor:
    """Activation-checkpoint `fn(x, feat_cache=..., feat_idx=..., **kwargs)`, a call that updates the cache.

    The recomputation in backward must start from the cache as it was before the call, so `fn` runs on
    a copy of the list taken now; the updated entries and index are copied back afterwards. Non-reentrant
    checkpointing also carries gradients into cached tensors that are closed over rather than passed.
    """
    before, start, result = list(cache), idx[0], {}

    def run(inp: torch.Tensor) -> torch.Tensor:
        local, local_idx = list(before), [start]
        out = fn(inp, feat_cache=local, feat_idx=local_idx, **kwargs)
        result["cache"], result["idx"] = local, local_idx[0]
        return out

    out = torch_checkpoint(run, x, use_reentrant=False)
    cache[:] = result["cache"]
    idx[0] = result["idx"]
    return out


class WanVAE(nn.Module):
    """Frozen wrapper around diffusers' `AutoencoderKLWan` with Wan's latent normalisation.

    Parameters never require grad and the module stays in eval mode (`train()` is a no-op), but every
    method is differentiable with respect to its input.

    Args:
        vae: A built `AutoencoderKLWan` (its config supplies `latents_mean` / `latents_std`).
        decode_context: Default `context` of `decode_last` (None: exact). K restarts the decoder with a
            fresh feature cache K latent frames before the first frame it must return: faster, not
            exact (see `decode_last`). `decode` and `stream_decoder` are always exact.
    """

    def __init__(self, vae: AutoencoderKLWan, *, decode_context: int | None = None) -> None:
        super().__init__()
        if not isinstance(vae, AutoencoderKLWan):
            raise ValueError(f"expected a diffusers AutoencoderKLWan, got {type(vae).__name__}")
        self.decode_context = _check_context(decode_context, "decode_context")
        self.vae = vae
        cfg = vae.config
        z_dim = int(cfg.z_dim)
        self.latent_channels = z_dim
        self.temporal_factor = int(getattr(cfg, "scale_factor_temporal", None) or _DEFAULT_TEMPORAL)
        self.spatial_factor = int(getattr(cfg, "scale_factor_spatial", None) or _DEFAULT_SPATIAL)
        if len(cfg.latents_mean) != z_dim or len(cfg.latents_std) != z_dim:
            raise ValueError(
                f"latents_mean/latents_std must have z_dim={z_dim} entries, got "
                f"{len(cfg.latents_mean)}/{len(cfg.latents_std)}"
            )
        # Buffers (not parameters) so they follow .to(device) and stay out of optimisers; not persistent
        # because the config, not a checkpoint, is their source of truth.
        self.register_buffer(
            "latents_mean", torch.tensor(cfg.latents_mean, dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "latents_std", torch.tensor(cfg.latents_std, dtype=torch.float32), persistent=False
        )
        self._num_decoder_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        self.requires_grad_(False)
        super().train(False)

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str | os.PathLike[str],
        *,
        subfolder: str | None = "vae",
        torch_dtype: torch.dtype | None = None,
        decode_context: int | None = None,
        **kwargs: Any,
    ) -> WanVAE:
        """Load from a diffusers folder or hub id, e.g. `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (subfolder `vae`).

        Wan's VAE is usually kept in float32: its decoder is small and bf16 costs visible quality.
        `decode_context` is the `WanVAE` argument (None: exact `decode_last`).
        """
        _check_context(decode_context, "decode_context")  # before the (slow) load
        from rfvideo.models.hub import resolve_pretrained

        path_or_hub_id = resolve_pretrained(path_or_hub_id, what="Wan VAE")
        vae = AutoencoderKLWan.from_pretrained(
            path_or_hub_id, subfolder=subfolder, torch_dtype=torch_dtype, **kwargs
        )
        return cls(vae, decode_context=decode_context)

    def save_pretrained(self, directory: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the wrapped `AutoencoderKLWan` as a diffusers folder (safetensors) for `from_pretrained`."""
        self.vae.save_pretrained(directory, safe_serialization=True, **kwargs)

    def train(self, mode: bool = True) -> WanVAE:
        """No-op: the VAE is frozen and must stay in eval mode whatever Lightning asks."""
        return super().train(False)

    # ---------------------------------------------------------------- checks and normalisation
    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (b F 3 H W), got shape {tuple(video.shape)}")
        num_latent_frames(video.shape[1], self.temporal_factor)
        h, w = video.shape[-2:]
        if h % self.spatial_factor or w % self.spatial_factor:
            raise ValueError(f"video height/width must be divisible by {self.spatial_factor}, got {h}x{w}")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"latents must be (b c f h w) with c={self.latent_channels}, got shape {tuple(latents.shape)}"
            )

    def _stats(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (c,) -> (1 c 1 1 1): broadcast over diffusers' (b c f h w)
        mean = self.latents_mean.to(device=ref.device, dtype=ref.dtype).view(1, -1, 1, 1, 1)
        std = self.latents_std.to(device=ref.device, dtype=ref.dtype).view(1, -1, 1, 1, 1)
        return mean, std

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw posterior latents (b c f h w) -> normalised (b c f h w): (z - mean) / std."""
        mean, std = self._stats(z)
        return (z - mean) / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (b c f h w) -> raw decoder input (b c f h w)."""
        mean, std = self._stats(z)
        return z * std + mean

    # ---------------------------------------------------------------- encode
    def encode(
        self, video: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Encode video in [0, 1] to normalised latents.

        Args:
            video: (b F 3 H W) in [0, 1], F = 1 + 4k, H and W divisible by 8.
            sample: Draw from the posterior instead of taking its mean (the default, deterministic).
            generator: Randomness for `sample=True`.

        Returns:
            Latents (b c f h w) (the generator's layout), f = 1 + (F - 1) / 4, normalised per channel.
        """
        self._check_video(video)
        x = einops.rearrange(video, "b F C H W -> b C F H W") * 2.0 - 1.0
        x = x.to(self.vae.dtype)
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample(generator=generator) if sample else posterior.mode()
        return self.normalize(z)

    # ---------------------------------------------------------------- decode
    def _decode_steps(
        self, x: torch.Tensor, cache: list[Any], start: int, *, checkpoint: bool = False
    ) -> tuple[torch.Tensor, list[Any]]:
        """Run the causal decoder one latent frame at a time, as diffusers' `_decode` does.

        Args:
            x: post-quant features (b c f' h w) of latent frames `start .. start + f' - 1`.
            cache: Feature cache left by frames `0 .. start - 1` (entries: None, "Rep" or tensors).
                Not mutated: the decoder replaces entries of a copy.
            start: Absolute index of x's first frame (frame 0 takes the `first_chunk` path).
            checkpoint: Activation-checkpoint the decoder block by block (see `_checkpointed_step`).

        Returns:
            Decoder output (b 3 F' h*8 w*8) in the decoder's range (unclamped), and the new cache.
        """
        cache = list(cache)
        outs = []
        for i in range(x.shape[2]):
            frame, first = x[:, :, i : i + 1], start + i == 0
            if checkpoint:
                outs.append(self._checkpointed_step(frame, cache, first_chunk=first))
            else:
                outs.append(self.vae.decoder(frame, feat_cache=cache, feat_idx=[0], first_chunk=first))
        return torch.cat(outs, dim=2), cache

    def _checkpointed_step(self, x: torch.Tensor, cache: list[Any], *, first_chunk: bool) -> torch.Tensor:
        """One latent frame through `WanDecoder3d.forward`, checkpointing each block separately.

        Checkpointing the whole decoder as one segment would only move the peak from forward to
        backward; per block (every residual block / resampler of the plain Wan2.1 up-blocks, whole
        up-blocks otherwise, mid block, head) the peak is one block's activations. Mirrors diffusers'
        `WanDecoder3d.forward` call for call, so the cache indices line up; a test checks equality.
        """
        dec = self.vae.decoder
        idx = [0]
        x = _causal_conv(dec.conv_in, x, cache, idx)  # lowest resolution: cheap, not checkpointed
        x = _checkpoint_cached(dec.mid_block, x, cache, idx)
        for up_block in dec.up_blocks:
            if isinstance(up_block, WanUpBlock):
                for resnet in up_block.resnets:
                    x = _checkpoint_cached(resnet, x, cache, idx)
                if up_block.upsamplers is not None:
                    x = _checkpoint_cached(up_block.upsamplers[0], x, cache, idx)
            else:
                x = _checkpoint_cached(up_block, x, cache, idx, first_chunk=first_chunk)

        def head(h: torch.Tensor, feat_cache: list[Any], feat_idx: list[int]) -> torch.Tensor:
            return _causal_conv(dec.conv_out, dec.nonlinearity(dec.norm_out(h)), feat_cache, feat_idx)

        return _checkpoint_cached(head, x, cache, idx)

    def _to_video(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output (b 3 F H W) -> video (b F 3 H W) in [0, 1], as diffusers post-processes it."""
        if self.vae.config.patch_size is not None:
            out = unpatchify(out, patch_size=self.vae.config.patch_size)
        out = torch.clamp(out, min=-1.0, max=1.0)
        return einops.rearrange((out + 1.0) / 2.0, "b C F H W -> b F C H W")

    def _post_quant(self, latents: torch.Tensor) -> torch.Tensor:
        # (b c f h w) normalised -> (b c f h w) post-quant features; post_quant_conv has a 1x1x1 kernel,
        # so it acts frame by frame and may run on any slice of frames.
        z = self.denormalize(latents.to(self.vae.dtype))
        return self.vae.post_quant_conv(z)

    def stream_decoder(self) -> WanStreamDecoder:
        """A decoder that takes the video chunk by chunk, in order, and returns each chunk's pixels at once.

        `decoder(chunk (b c f h w))` equals the matching slice of `decode` of the whole video: the causal
        decoder's feature cache is kept between calls, so a chunk needs only its own latents.
        """
        return WanStreamDecoder(self)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode normalised latents (b c f h w) to video (b F 3 H W) in [0, 1], F = 1 + 4(f - 1)."""
        self._check_latents(latents)
        out, _ = self._decode_steps(self._post_quant(latents), [None] * self._num_decoder_convs, 0)
        return self._to_video(out)

    def decode_last(
        self,
        latents: torch.Tensor,
        num_frames: int = 1,
        *,
        checkpoint: bool = False,
        context: int | None | Literal["vae_default"] = _VAE_DEFAULT,
    ) -> torch.Tensor:
        """Decode only the last `num_frames` pixel frames: exactly as a full decode would, or truncated.

        Exact (`context=None`): the decoder's feature cache for the earlier latent frames is built under
        `no_grad`; then the minimal trailing latent frames are decoded with grad. The result equals
        `decode(latents)[:, -num_frames:]`; its gradient reaches only the trailing latent frames that
        were decoded (the cache is a constant), i.e. it equals the gradient of a full decode of
        `cat(latents[:, :j].detach(), latents[:, j:])`, j the first decoded latent frame.

        Truncated (`context=K`): the decoder starts with a fresh cache at latent frame `s = max(0, j - K)`,
        decodes frames `s .. j - 1` under `no_grad` and the rest with grad. The result equals
        `decode(latents[:, s:])[:, -num_frames:]` (frame s decoded as a first frame) and its gradient
        that of `decode(cat(latents[:, s:j].detach(), latents[:, j:]))[:, -num_frames:]`. Not exact: the
        decoder's cache reaches further back than any practical K, so the error depends on K and on the
        weights (bench/vae_decode.py). `K >= j` is the exact decode, bit for bit.

        Args:
            latents: Normalised latents (b c f h w).
            num_frames: Trailing pixel frames to return, 1 .. 1 + 4(f - 1).
            checkpoint: Activation-checkpoint the trailing decode block by block: backward recomputes
                each decoder block, so only block inputs are kept and the backward peak is one block's
                activations. No effect when grad is disabled.
            context: None for the exact decode, or K >= 0 latent frames of context before frame j. Left
                out: the VAE's `decode_context`. K = 0 gives latent frame j one pixel frame (a fresh cache
                decodes its first frame as frame 0), so it serves only `num_frames` that need at most
                the last pixel frame of frame j.

        Returns:
            Video (b num_frames 3 H W) in [0, 1].
        """
        self._check_latents(latents)
        total = num_pixel_frames(latents.shape[2], self.temporal_factor)
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 1 <= num_frames <= total:
            raise ValueError(f"num_frames must be an int in [1, {total}], got {num_frames!r}")
        k = self.decode_context if isinstance(context, str) and context == _VAE_DEFAULT else context
        k = _check_context(k, "context")
        start = latent_frames_for_pixel_frames([total - num_frames], total, self.temporal_factor)[0]
        begin = 0 if k is None else max(0, start - k)
        available = num_pixel_frames(latents.shape[2] - begin, self.temporal_factor)
        if num_frames > available:
            raise ValueError(
                f"context={k} restarts the decoder at latent frame {begin}, which then yields "
                f"{available} pixel frames; num_frames={num_frames} needs context >= 1"
            )
        # Frame indices below are relative to `begin`: a fresh cache treats latent `begin` as frame 0.
        cache: list[Any] = [None] * self._num_decoder_convs
        if start > begin:
            with torch.no_grad():
                _, cache = self._decode_steps(self._post_quant(latents[:, :, begin:start]), cache, 0)

        video = self._to_video(
            self._decode_steps(
                self._post_quant(latents[:, :, start:]),
                cache,
                start - begin,
                checkpoint=checkpoint and torch.is_grad_enabled(),
            )[0]
        )
        return video[:, -num_frames:]


class WanStreamDecoder:
    """Chunk-by-chunk decode of one video (a batch of videos), equal to `WanVAE.decode` of the whole.

    The causal decoder keeps, per causal convolution, the last input frames of that convolution; this
    object carries that feature cache from one call to the next, so each chunk's latents decode as soon
    as they exist and memory stays constant however long the video grows (a few frames per conv).
    Runs under `no_grad`: streaming is inference (use `WanVAE.decode_last` for a differentiable decode).

    Call it with consecutive chunks `(b c f h w)`: the first returns `1 + 4 (f - 1)` pixel frames
    (latent frame 0 decodes to one pixel frame), every later one `4 f`. Batch, channels and latent size
    must stay those of the first chunk; `reset()` starts a new video.

    Args:
        vae: The `WanVAE` whose decoder runs.
    """

    def __init__(self, vae: WanVAE) -> None:
        self.vae = vae
        self.reset()

    def reset(self) -> None:
        """Forget the feature cache and the frame count: the next call is latent frame 0 of a new video."""
        self._cache: list[Any] = [None] * self.vae._num_decoder_convs
        self.next_frame = 0  # absolute latent index of the next chunk's first frame
        self._shape: tuple[int, int, int, int] | None = None  # (b, c, h, w) of the first chunk

    def cache_bytes(self) -> int:
        """Bytes of the feature cache carried between calls (constant once the first chunk is decoded)."""
        return sum(t.numel() * t.element_size() for t in self._cache if isinstance(t, torch.Tensor))

    @torch.no_grad()
    def __call__(self, chunk_latents: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor:
        """Decode the next chunk.

        Args:
            chunk_latents: Normalised latents `(b c f h w)` of the latent frames following those already
                decoded (f >= 1).
            frame_offset: Optional absolute latent index of the chunk's first frame; when given it must
                equal the number of frames decoded so far (catches a skipped or repeated chunk).

        Returns:
            Video `(b F 3 H W)` in [0, 1]: `F = 1 + 4 (f - 1)` for the first chunk, `4 f` afterwards.

        Raises:
            ValueError: a chunk of the wrong rank / channels, a batch or latent size other than the first
                chunk's, or a `frame_offset` other than the next frame.
        """
        vae = self.vae
        vae._check_latents(chunk_latents)
        b, c, f, h, w = chunk_latents.shape
        if f < 1:
            raise ValueError(
                f"chunk_latents must hold at least one latent frame, got shape {(b, c, f, h, w)}"
            )
        check_chunk_continues((b, c, f, h, w), self._shape, frame_offset, self.next_frame)
        out, cache = vae._decode_steps(vae._post_quant(chunk_latents), self._cache, self.next_frame)
        # Commit only after the decode succeeded, so an exception leaves the stream where it was.
        self._cache = cache
        self._shape = (b, c, h, w)
        self.next_frame += f
        return vae._to_video(out)
