"""From a pipeline to what the server needs: a factory of fresh streaming generators.

Every stream gets its own `rfvideo.streaming.StreamingGenerator` (its own KV cache and decoder cache) over
the pipeline's one transformer and VAE, whose weights are only read (`RFVideoPipeline.stream_generator`).

A VAE without a streaming decoder (e.g. the demo world's pooling codec) streams through
`rfvideo.streaming.HistoryStreamDecoder` (exact, but every chunk re-decodes the stream so far), so such
streams must be finite (`max_chunks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["has_stream_decoder", "streaming_factory"]


def has_stream_decoder(vae: Any) -> bool:
    """Whether `vae` offers `stream_decoder()` (rfvideo.models.WanVAE does)."""
    return callable(getattr(vae, "stream_decoder", None))


def streaming_factory(
    pipe: Any, *, max_chunks: int | None = None, fps: float | None = None
) -> Callable[[], Any]:
    """Fresh `StreamingGenerator`s over an `RFVideoPipeline`.

    Args:
        pipe: the pipeline (built, on its device).
        max_chunks: chunks per stream; None = endless (needs a rolling window and relative RoPE).
        fps: pixel frames per second of the video; None keeps the pipeline's.

    Returns:
        A callable building one generator per stream (seed set by the stream's `reset`).

    Raises:
        ValueError: the model cannot stream `max_chunks` chunks (`check_stream_length`), or a VAE without a
            streaming decoder with `max_chunks=None`.
    """
    from rfvideo.streaming import check_stream_length

    check_stream_length(pipe.transformer.config, max_chunks)
    if max_chunks is None and not has_stream_decoder(pipe.vae):
        raise ValueError(
            f"the VAE ({type(pipe.vae).__name__}) has no stream_decoder(), so every chunk re-decodes the "
            "stream so far: set max_chunks to bound the stream"
        )
    return lambda: pipe.stream_generator(max_chunks=max_chunks, fps=fps)
