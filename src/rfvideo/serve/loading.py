"""From a trained recipe to what the server needs: a factory of fresh streaming generators.

Every stream gets its own `rfvideo.streaming.StreamingGenerator` (its own KV cache and decoder cache) over
the one shared model and VAE, whose weights are only read.

A VAE without a streaming decoder (e.g. the demo world's pooling codec) streams through
`rfvideo.streaming.HistoryStreamDecoder` (exact, but every chunk re-decodes the stream so far), so such
streams must be finite (`max_chunks`).

Legend: `b` batch, `f` latent frames, `c` latent channels, `h w` latent height/width, `F` pixel frames,
`H W` pixel height/width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["has_stream_decoder", "streaming_factory"]


def has_stream_decoder(vae: Any) -> bool:
    """Whether `vae` offers `stream_decoder()` (rfvideo.models.WanVAE does)."""
    return callable(getattr(vae, "stream_decoder", None))


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
    if max_chunks is None and not has_stream_decoder(module.vae):
        raise ValueError(
            f"the VAE ({type(module.vae).__name__}) has no stream_decoder(), so every chunk re-decodes the "
            "stream so far: set max_chunks to bound the stream"
        )
    return lambda: StreamingGenerator.from_module(module, use_ema=use_ema, **kwargs)
