"""From a trained recipe to what the server needs: a factory of fresh streaming generators.

Every stream gets its own `rfvideo.streaming.StreamingGenerator` (its own KV cache and decoder cache) over
the one shared model and VAE, whose weights are only read.

A VAE without a streaming decoder (e.g. the demo world's pooling codec) is wrapped by
`PrefixRedecodeVAE`: each chunk re-decodes every latent frame of the stream so far and returns the new
pixel frames. That is exact for any causal decoder (a prefix decodes to a prefix of the video) at a cost
that grows with the stream, so such streams must be finite (`max_chunks`).

Legend: `b` batch, `f` latent frames, `c` latent channels, `h w` latent height/width, `F` pixel frames,
`H W` pixel height/width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["PrefixRedecodeVAE", "has_stream_decoder", "streaming_factory"]


def has_stream_decoder(vae: Any) -> bool:
    """Whether `vae` offers `stream_decoder()` (rfvideo.models.WanVAE does)."""
    return callable(getattr(vae, "stream_decoder", None))


class _PrefixRedecoder:
    """`decoder(chunk (b f c h w), frame_offset=None) -> (b F 3 H W)`: the new frames of a full re-decode."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae
        self.reset()

    def reset(self) -> None:
        self._latents: torch.Tensor | None = None  # (b f c h w): the stream's latents so far
        self._frames_out = 0

    @property
    def next_frame(self) -> int:
        return 0 if self._latents is None else int(self._latents.shape[1])

    def __call__(self, chunk_latents: torch.Tensor, *, frame_offset: int | None = None) -> torch.Tensor:
        if chunk_latents.ndim != 5:
            raise ValueError(f"chunk latents must be (b f c h w), got shape {tuple(chunk_latents.shape)}")
        if frame_offset is not None and frame_offset != self.next_frame:
            raise ValueError(f"frame_offset={frame_offset} but the next latent frame is {self.next_frame}")
        self._latents = (
            chunk_latents if self._latents is None else torch.cat([self._latents, chunk_latents], dim=1)
        )
        video = self.vae.decode(self._latents)  # (b F 3 H W), F grows with the stream
        new = video[:, self._frames_out :]
        self._frames_out = int(video.shape[1])
        return new


class PrefixRedecodeVAE(nn.Module):
    """Gives any causal video decoder a `stream_decoder()` by re-decoding the stream's prefix (exact).

    Args:
        vae: a frozen VAE with `decode(latents (b f c h w)) -> (b F 3 H W)`.
    """

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The wrapped VAE's full decode."""
        return self.vae.decode(latents)

    def stream_decoder(self) -> _PrefixRedecoder:
        """A chunk-by-chunk decoder whose concatenated outputs equal `decode` of the whole stream."""
        return _PrefixRedecoder(self.vae)


def streaming_factory(
    module: Any, *, use_ema: bool = True, max_chunks: int | None = None, fps: float | None = None
) -> Callable[[], Any]:
    """Fresh `StreamingGenerator`s over a trained recipe (anything `StreamingGenerator.from_module` takes).

    Args:
        module: an `ODEInitModule` / `RewardForcingModule` (built, weights loaded, on its device).
        use_ema: stream from the EMA weights when the module has them.
        max_chunks: chunks per stream; None = endless (needs a rolling window and relative RoPE).
        fps: pixel frames per second of the video; None keeps the generator's default (Wan's 16).

    Returns:
        A callable building one generator per stream (seed set by the stream's `reset`).

    Raises:
        ValueError: the model cannot stream `max_chunks` chunks (`check_stream_length`), or a VAE without a
            streaming decoder with `max_chunks=None`.
    """
    from rfvideo.streaming import StreamingGenerator, check_stream_length

    ema = getattr(module, "generator_ema", None)
    model = ema if use_ema and ema is not None else module.generator
    check_stream_length(model.config, max_chunks)
    kwargs: dict[str, Any] = {"max_chunks": max_chunks}
    if fps is not None:
        kwargs["fps"] = fps
    if has_stream_decoder(module.vae):
        return lambda: StreamingGenerator.from_module(module, use_ema=use_ema, **kwargs)
    if max_chunks is None:
        raise ValueError(
            f"the VAE ({type(module.vae).__name__}) has no stream_decoder(), so every chunk re-decodes the "
            "stream so far: set max_chunks to bound the stream"
        )
    vae = PrefixRedecodeVAE(module.vae)
    param = next(model.parameters())
    model.eval()

    def make() -> Any:
        return StreamingGenerator(
            model, vae, module.encode_prompts, schedule=module.schedule,
            latent_size=tuple(module.latent_size), device=param.device, dtype=param.dtype, **kwargs,
        )  # fmt: skip

    return make
