"""Few-step chunk-wise autoregressive sampler over a KV-cached causal generator (inference).

Per chunk of `model.num_frames_per_chunk` latent frames (Self-Forcing's few-step sampler):

    x <- eps_k                                   (the chunk's slice of `noise`, s_0 = 1)
    for j in 0..S-1:
        x0 <- x - s_j v(x, t_j | cache)          (flow.py eq. 3, attention over cached earlier chunks)
        x  <- (1 - s_{j+1}) x0 + s_{j+1} eps'    (flow.py eq. 1, fresh eps' from `generator`; j < S-1)
    output x0; then one context pass v(x0, t=0) with write_cache=True stores the clean chunk's K/V.

`sample_chunk` is the inner loop (one chunk's few steps); `chunk_loop` runs it chunk after chunk and is
shared by inference (`stream_chunks`, `sample_chunkwise`, `rfvideo.pipeline`) and the training rollout
(`rollout.py`, which stops each chunk at its exit step). A prompt-switching stream
(`rfvideo.streaming.StreamingGenerator`) calls `sample_chunk` and `context_pass` itself, because it
re-caches between chunks. It yields each clean chunk before its
context pass, which runs when the iterator is resumed: the pass is needed only by the next chunk, so a
streaming consumer gets the chunk one forward earlier.
Rolling windows / attention sinks for long videos live in the model's cache; the sampler only passes the
absolute `frame_offset` of each chunk.
Legend: `b` batch, `c` latent channels, `f` latent frames, `k` frames per chunk, `h w` latent
height/width, `n d` text tokens / width.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from rfvideo.sampling.flow import add_noise, x0_from_flow
from rfvideo.sampling.schedule import FlowMatchSchedule

__all__ = [
    "check_inputs",
    "chunk_loop",
    "context_pass",
    "denoise_step",
    "fresh_noise",
    "sample_chunk",
    "sample_chunkwise",
    "stream_chunks",
]


def check_inputs(model: Any, noise: torch.Tensor, encoder_hidden_states: torch.Tensor) -> int:
    """Validate sampler inputs; returns the number of chunks.

    Raises:
        ValueError: wrong ranks, batch mismatch, or a frame count not divisible by the chunk size.
    """
    if noise.ndim != 5:
        raise ValueError(f"noise must be (b c f h w), got shape {tuple(noise.shape)}")
    if encoder_hidden_states.ndim != 3:
        raise ValueError(
            f"encoder_hidden_states must be (b n d), got shape {tuple(encoder_hidden_states.shape)}"
        )
    if encoder_hidden_states.shape[0] != noise.shape[0]:
        raise ValueError(
            f"batch mismatch: noise has batch {noise.shape[0]}, "
            f"encoder_hidden_states has batch {encoder_hidden_states.shape[0]}"
        )
    k = int(model.num_frames_per_chunk)
    f = noise.shape[2]
    if f == 0 or f % k != 0:
        raise ValueError(
            f"number of latent frames f={f} must be a positive multiple of num_frames_per_chunk={k}"
        )
    return f // k


def fresh_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like `like`, drawn on the generator's device, then moved to `like`'s."""
    device = generator.device if generator is not None else like.device
    eps = torch.randn(like.shape, generator=generator, device=device, dtype=torch.float32)
    return eps.to(device=like.device, dtype=like.dtype)


def denoise_step(
    model: Any,
    x: torch.Tensor,
    sigma: float,
    encoder_hidden_states: torch.Tensor,
    *,
    kv_cache: Any,
    frame_offset: int,
    num_train_timesteps: int,
    timestep: float | None = None,
) -> torch.Tensor:
    """One cached x0 prediction of a chunk `x (b c k h w)` at noise level `sigma`: eq. (3) of flow.py;
    the model sees `timestep` (default `sigma * num_train_timesteps`; `FlowMatchSchedule.model_timesteps`)."""
    b, _, k = x.shape[:3]
    t_model = sigma * num_train_timesteps if timestep is None else timestep
    t = torch.full((b, k), t_model, device=x.device, dtype=torch.float32)
    v = model(
        x,
        t,
        encoder_hidden_states,
        attention_mode="cached",
        kv_cache=kv_cache,
        frame_offset=frame_offset,
        write_cache=False,
    )
    # Conversion in float32: in bf16 `x - s v` loses the small differences that carry the detail.
    return x0_from_flow(x.float(), v.float(), sigma).to(x.dtype)


@torch.no_grad()
def context_pass(
    model: Any, x0: torch.Tensor, encoder_hidden_states: torch.Tensor, *, kv_cache: Any, frame_offset: int
) -> None:
    """Write the clean chunk `x0 (b c k h w)` into the cache with one forward at t = 0 (output unused)."""
    b, _, k = x0.shape[:3]
    t = torch.zeros((b, k), device=x0.device, dtype=torch.float32)
    model(
        x0.detach(),
        t,
        encoder_hidden_states,
        attention_mode="cached",
        kv_cache=kv_cache,
        frame_offset=frame_offset,
        write_cache=True,
    )


StepCallback = Callable[[int, float, torch.Tensor], torch.Tensor | None]
"""`(step, timestep, latents (b c k h w)) -> replacement or None`, after each denoising step of a chunk."""


def sample_chunk(
    model: Any,
    x: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    schedule: FlowMatchSchedule,
    generator: torch.Generator | None,
    kv_cache: Any,
    frame_offset: int,
    exit_step: int | None = None,
    grad: bool = False,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """One chunk's few-step sampler against the cache (the module docstring's inner loop).

    Args:
        model: a `CausalWanTransformer`.
        x: the chunk's initial noise `(b c k h w)` (sigma = 1).
        encoder_hidden_states: text embeddings `(b n d)`.
        schedule: the few-step schedule.
        generator: draws the re-noising noise (one `(b c k h w)` draw per step before the exit step).
        kv_cache: the cache holding the earlier chunks.
        frame_offset: absolute latent index of the chunk's first frame.
        exit_step: the step whose x0 prediction is returned (None: the last step).
        grad: record a graph for the exit-step forward (every other forward runs under no_grad).
        on_step: called after each step `j` with `(j, t_j, latents)`, where `latents` is the next step's
            input (or, after the exit step, the chunk's output); a returned tensor replaces it.

    Returns:
        The chunk's clean latents `(b c k h w)`.
    """
    sigmas, model_ts = schedule.sigmas.tolist(), schedule.model_timesteps
    last = len(sigmas) - 1 if exit_step is None else exit_step
    for j in range(last + 1):
        with torch.set_grad_enabled(grad and j == last):
            x0 = denoise_step(
                model,
                x,
                sigmas[j],
                encoder_hidden_states,
                kv_cache=kv_cache,
                frame_offset=frame_offset,
                num_train_timesteps=schedule.num_train_timesteps,
                timestep=model_ts[j],
            )
        if j < last:
            with torch.no_grad():
                x = add_noise(x0, fresh_noise(x0, generator), sigmas[j + 1])
        if on_step is not None:
            replaced = on_step(j, model_ts[j], x if j < last else x0)
            if replaced is not None:
                if j < last:
                    x = replaced
                else:
                    x0 = replaced
    return x0


def chunk_loop(
    model: Any,
    noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    schedule: FlowMatchSchedule,
    generator: torch.Generator | None = None,
    kv_cache: Any | None = None,
    exit_steps: Sequence[int] | None = None,
    grad_from_chunk: int = 0,
    on_step: Callable[[int, int, float, torch.Tensor], torch.Tensor | None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The chunk loop: per chunk, `sample_chunk` up to its exit step, yield, then the context pass.

    Args:
        model: a `CausalWanTransformer` (docs/interfaces.md "Generator").
        noise: initial noise for the whole video, `(b c f h w)`, `f % k == 0`.
        encoder_hidden_states: text embeddings `(b n d)`.
        schedule: the few-step schedule.
        generator: draws the re-noising noise (one `(b c k h w)` draw per chunk and step but the last).
        kv_cache: a cache from `model.new_kv_cache`; reset before use. None creates one.
        exit_steps: per chunk, the step whose x0 prediction is the chunk's output (None: the last step).
        grad_from_chunk: with autograd enabled (at the first resume), the exit-step forward of chunks
            `>= grad_from_chunk` records a graph; every other forward runs under no_grad.
        on_step: `(chunk, step, timestep, latents) -> replacement or None` after each denoising step
            (`sample_chunk`'s `on_step`, with the chunk index in front).

    Yields:
        `(chunk_index, x0 (b c k h w))`, before the chunk's context pass (it runs on the next resume).
    """
    num_chunks = check_inputs(model, noise, encoder_hidden_states)
    k = int(model.num_frames_per_chunk)
    if kv_cache is None:
        kv_cache = model.new_kv_cache(noise.shape[0], device=noise.device, dtype=noise.dtype)
    else:
        kv_cache.reset()
    reserve = getattr(kv_cache, "reserve", None)
    if reserve is not None:
        reserve(noise.shape[2])  # a global cache then never grows (one buffer for the whole video)
    grad_enabled = torch.is_grad_enabled()
    for i in range(num_chunks):
        offset = i * k
        x0 = sample_chunk(
            model,
            noise[:, :, offset : offset + k],
            encoder_hidden_states,
            schedule=schedule,
            generator=generator,
            kv_cache=kv_cache,
            frame_offset=offset,
            exit_step=None if exit_steps is None else exit_steps[i],
            grad=grad_enabled and i >= grad_from_chunk,
            on_step=None if on_step is None else functools.partial(on_step, i),
        )
        yield i, x0
        context_pass(model, x0, encoder_hidden_states, kv_cache=kv_cache, frame_offset=offset)


@torch.no_grad()
def stream_chunks(
    model: Any,
    noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    schedule: FlowMatchSchedule,
    generator: torch.Generator | None = None,
    kv_cache: Any | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Generate chunk by chunk, yielding `(chunk_index, latents (b c k h w))` as soon as each chunk is clean.

    Args:
        model: a `CausalWanTransformer` (docs/interfaces.md "Generator").
        noise: initial noise for the whole video, `(b c f h w)`, `f % k == 0`.
        encoder_hidden_states: text embeddings `(b n d)`.
        schedule: the few-step schedule.
        generator: draws the re-noising noise (one `(b c k h w)` draw per chunk and step but the last).
        kv_cache: a cache from `model.new_kv_cache`; reset before use. None creates one.

    Yields:
        The chunk index and its clean latents, after the chunk's denoising steps and before its t = 0
        context pass (which runs when the iterator is resumed, before the next chunk).
    """
    yield from chunk_loop(
        model, noise, encoder_hidden_states, schedule=schedule, generator=generator, kv_cache=kv_cache
    )


@torch.no_grad()
def sample_chunkwise(
    model: Any,
    noise: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    *,
    schedule: FlowMatchSchedule,
    generator: torch.Generator | None = None,
    kv_cache: Any | None = None,
) -> torch.Tensor:
    """Generate a whole video; same arguments as `stream_chunks`.

    Returns:
        Clean latents `(b c f h w)`.
    """
    chunks = [
        c
        for _, c in stream_chunks(
            model, noise, encoder_hidden_states, schedule=schedule, generator=generator, kv_cache=kv_cache
        )
    ]
    return torch.cat(chunks, dim=2)
