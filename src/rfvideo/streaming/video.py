"""Pixel frames of a video as each chunk is generated: the chunk-wise sampler and the VAE's streaming decoder.

`stream_video` drives `rfvideo.sampling.stream_chunks` and decodes every chunk the moment the sampler yields
it. The sampler yields a chunk before its t = 0 context pass (that pass only serves the next chunk and runs
when the iterator is resumed), so the first pixel frames wait for the denoising forwards of chunk 0 and one
decode, and each later chunk for its own denoising forwards, the previous chunk's context pass and a decode.

Legend: `b` batch, `c` latent channels, `f` latent frames, `k` frames per chunk, `h w` latent height/width,
`F` pixel frames, `H W` pixel height/width, `n d` text tokens / width.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

from rfvideo.models.vae import WanVAE
from rfvideo.sampling import FlowMatchSchedule, stream_chunks
from rfvideo.streaming.decoders import stream_decoder_for
from rfvideo.utils.timings import sync_device

__all__ = ["stream_video"]


def vae_dtype(vae: Any) -> torch.dtype:
    """The dtype the VAE computes in (latents are cast to it at the generator / VAE seam)."""
    for t in (*vae.parameters(), *vae.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


@torch.no_grad()
def stream_video(
    model: Any,
    vae: WanVAE,
    noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    schedule: FlowMatchSchedule,
    generator: torch.Generator | None = None,
    kv_cache: Any | None = None,
    timings: list[dict[str, float]] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Generate a video chunk by chunk and yield each chunk's pixel frames as soon as they are decoded.

    The concatenation of the yielded frames equals `vae.decode` of `sample_chunkwise(model, noise, ...)`'s
    latents (same noise and generator): the sampler is the same and the streaming decoder equals the full
    decode.

    Args:
        model: A `CausalWanTransformer` (docs/interfaces.md "Generator").
        vae: The frozen `WanVAE`.
        noise: Initial noise of the whole video `(b c f h w)`, `f % k == 0`.
        encoder_hidden_states: Text embeddings `(b n d)`.
        schedule: The few-step schedule.
        generator: Draws the re-noising noise (as in `stream_chunks`).
        kv_cache: A cache from `model.new_kv_cache`, reset before use; None creates one.
        timings: If given, one dict per chunk is appended: `model`, the seconds spent in the sampler for
            that chunk (its denoising forwards and the previous chunk's context pass), and `decode`.

    Yields:
        `(chunk_index, frames (b F 3 H W))` in [0, 1], in the VAE's dtype, on the VAE's device: chunk 0
        has `F = 1 + 4 (k - 1)` frames, every later chunk `4 k`.
    """
    k = int(model.num_frames_per_chunk)
    decoder = stream_decoder_for(vae)
    dtype = vae_dtype(vae)
    chunks = stream_chunks(
        model, noise, encoder_hidden_states, schedule=schedule, generator=generator, kv_cache=kv_cache
    )
    t0 = time.perf_counter()
    for i, latents in chunks:
        sync_device(noise.device)
        t1 = time.perf_counter()
        lat = latents.to(dtype)
        # Decoding here, before the loop resumes `chunks`, puts the decode ahead of the context pass.
        frames = decoder(lat, frame_offset=i * k)
        sync_device(frames.device)
        t2 = time.perf_counter()
        if timings is not None:
            timings.append({"model": t1 - t0, "decode": t2 - t1})
        yield i, frames
        t0 = time.perf_counter()  # the consumer's time between chunks is neither model nor decode
