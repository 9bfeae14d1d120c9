"""An interactive, possibly endless video stream: one chunk of pixel frames per call, prompt switching at
chunk boundaries (LongLive's KV re-cache), constant memory with a rolling window.

Per `next_chunk()` call, in order:
  1. the previous chunk's t = 0 context pass writes its clean latents into the KV cache (deferred from the
     previous call so that call could return its pixels first);
  2. a pending prompt switch: the cross-attention K/V are dropped (`KVCache.reset_cross`) and every frame
     the cache holds is re-encoded under the new prompt (`model.recache`: one t = 0 forward over those
     frames' clean latents, with the visibility they had), so the next chunk continues the same scene
     under the new text instead of cutting; with `recache_sinks="resink"` (LongLive's interactive config)
     the cache first restarts from the last `local_attn_size` frames (`KVCache.prepare_recache`);
  3. the chunk is denoised by `rfvideo.sampling.sample_chunk` (the one chunk loop every sampler shares);
  4. its latents are decoded by the VAE's streaming decoder (causal feature cache carried across chunks).

Memory: the KV cache holds at most sinks + window frames (rolling window) and this object keeps only the
clean latents a re-cache needs (`KVCache.recache_frames`: the frames the cache holds, or with
`recache_sinks="resink"` the last `local_attn_size` frames), plus the decoder's few cached frames.
With `rope_mode="relative"` and a window, positions stay inside the RoPE table, so the stream is endless.

Noise: a stream of known length (`max_chunks`) draws its whole initial noise `(b c f h w)` first and then the
re-noising, from one CPU generator seeded with `seed`, exactly as `rfvideo.pipeline.RFVideoPipeline.__call__`
(and `sample_chunkwise`) do, so a finite stream equals the pipeline's video for the same seed. An endless
stream cannot draw ahead: it draws each chunk's initial noise just before the chunk.

Legend: `b` batch, `c` latent channels, `k` frames per chunk, `h w` latent height/width, `F` pixel frames,
`H W` pixel height/width, `n d` text tokens / width.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rfvideo.models.causal_options import CausalOptions
from rfvideo.sampling import FlowMatchSchedule
from rfvideo.sampling.chunkwise import context_pass, sample_chunk
from rfvideo.streaming.decoders import stream_decoder_for
from rfvideo.streaming.video import vae_dtype
from rfvideo.utils.timings import GenerationTimings, sync_device

__all__ = ["StreamingGenerator", "check_stream_length"]

# Wan2.1 generates and is evaluated at 16 frames per second.
WAN_FPS = 16.0


def check_stream_length(config: Any, max_chunks: int | None) -> None:
    """Refuse, before generating, a stream the model cannot run to its end.

    The RoPE positions a stream needs are `CausalOptions.rope_frames_needed` (the one home of that rule).
    An endless stream (`max_chunks=None`) therefore needs relative RoPE and a rolling window; with global
    attention it would also hold every frame's K/V, growing without bound.

    Args:
        config: The generator's config (`num_frames_per_chunk`, `local_attn_size`, `rope_mode`,
            `rope_max_seq_len`).
        max_chunks: Chunks the stream may produce; None = endless.

    Raises:
        ValueError: naming `max_chunks` and the option that limits it.
    """
    opts = CausalOptions.from_config(config)
    table = int(config["rope_max_seq_len"])
    frames = None if max_chunks is None else max_chunks * opts.num_frames_per_chunk
    if max_chunks is None and opts.local_attn_size == -1:
        raise ValueError(
            "max_chunks=None (an endless stream) needs a rolling window: local_attn_size=-1 keeps every "
            "frame's K/V, so memory grows without bound; set local_attn_size (and rope_mode='relative')"
        )
    needed = opts.rope_frames_needed(frames)
    if needed is None:
        raise ValueError(
            f"max_chunks=None (an endless stream) with rope_mode={opts.rope_mode!r} runs past the RoPE table "
            f"(rope_max_seq_len={table} latent frames); use rope_mode='relative' with a rolling window"
        )
    if needed > table:
        raise ValueError(
            f"max_chunks={max_chunks} ({frames} latent frames) with rope_mode={opts.rope_mode!r} and "
            f"local_attn_size={opts.local_attn_size} reaches RoPE position {needed - 1}, past the table "
            f"(rope_max_seq_len={table}); use rope_mode='relative' with a rolling window"
        )


class StreamingGenerator:
    """Chunk-by-chunk text-to-video stream with prompt switching (docs/interfaces.md "Streaming").

    Args:
        model: A `CausalWanTransformer` in eval mode (with `new_kv_cache`, `recache`).
        vae: The decoder slot (`WanVAE` or any decoder with `decode_last` / `stream_decoder`).
        encode_prompt: `prompts (list[str], one per batch element) -> embeddings (b n d)`.
        schedule: The few-step schedule.
        latent_size: Latent `(h, w)`.
        seed: Seed of the stream's noise (initial noise and re-noising of every chunk).
        generator: A CPU generator to draw the noise from instead of one seeded with `seed` (the first stream
            only; `reset(seed)` seeds a fresh one).
        batch_size: Videos generated side by side (one prompt each).
        device: Device of the generator's inputs; default the model's.
        dtype: Dtype of the generator's inputs; default the model's parameter dtype.
        max_chunks: Chunks the stream may produce; None = endless (needs a rolling window and relative RoPE).
        fps: Pixel frames per second of the video (16 for Wan2.1).
        load_seconds: Seconds it took to build the model (reported in `timings.load_s`).

    Iterating the stream yields `next_chunk()` until `max_chunks` (forever when endless). `timings`
    (`GenerationTimings`) sums the seconds of every chunk since the last `reset` (text encoding of every
    `set_prompt` included) and holds the time from the start (`start_clock`, or the reset) to the first
    pixel frame; `chunk_seconds` the last call's `{"model", "decode"}`.

    Raises:
        ValueError: a bad `latent_size` / `batch_size` / `max_chunks`, or a stream length the model cannot
            reach (see `check_stream_length`).
    """

    def __init__(
        self,
        model: Any,
        vae: Any,
        encode_prompt: Callable[[list[str]], torch.Tensor],
        *,
        schedule: FlowMatchSchedule,
        latent_size: tuple[int, int],
        seed: int = 0,
        generator: torch.Generator | None = None,
        batch_size: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_chunks: int | None = None,
        fps: float = WAN_FPS,
        load_seconds: float | None = None,
    ) -> None:
        if len(latent_size) != 2 or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in latent_size
        ):
            raise ValueError(f"latent_size must be (h, w) with positive ints, got {latent_size!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if max_chunks is not None and (
            isinstance(max_chunks, bool) or not isinstance(max_chunks, int) or max_chunks < 1
        ):
            raise ValueError(f"max_chunks must be None or a positive int, got {max_chunks!r}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        check_stream_length(model.config, max_chunks)
        param = next(model.parameters())
        self.model = model
        self.vae = vae
        self.encode_prompt = encode_prompt
        self.schedule = schedule
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else param.device
        self.dtype = dtype if dtype is not None else param.dtype
        self.max_chunks = max_chunks
        self.fps = float(fps)
        self.num_frames_per_chunk = int(model.num_frames_per_chunk)
        self.latent_channels = int(model.config["in_channels"])
        self.kv_cache = model.new_kv_cache(batch_size, device=self.device, dtype=self.dtype)
        self.decoder = stream_decoder_for(vae)
        self.prompt: list[str] | None = None
        self._embeds: torch.Tensor | None = None
        self._next: tuple[list[str], torch.Tensor] | None = None
        self.load_seconds = load_seconds
        self.chunk_seconds: dict[str, float] = {}
        self.timings = GenerationTimings(load_s=load_seconds)
        self.reset(seed, generator=generator)

    # ------------------------------------------------------------------ state
    @property
    def chunk_index(self) -> int:
        """Chunks produced since the last `reset` (the index the next chunk will have)."""
        return self._chunk_index

    def reset(self, seed: int | None = None, *, generator: torch.Generator | None = None) -> None:
        """Start a new stream at chunk 0 (the current prompt is kept; a pending switch becomes the prompt).

        Args:
            seed: Seed of the new stream's noise; None keeps the current seed (the stream replays).
            generator: Draw the new stream's noise from this CPU generator instead (its current state).
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed must be an int, got {seed!r}")
            self.seed = seed
        if generator is not None:
            if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
                raise ValueError(f"generator must be a CPU torch.Generator, got {generator!r}")
            self._rng = generator
        else:
            self._rng = torch.Generator().manual_seed(self.seed)
        self.timings = GenerationTimings(load_s=self.load_seconds)
        self._t_start = time.perf_counter()
        self._noise: torch.Tensor | None = None
        if self.max_chunks is not None:  # known length: the whole initial noise first (see module doc)
            h, w = self.latent_size
            f = self.max_chunks * self.num_frames_per_chunk
            shape = (self.batch_size, self.latent_channels, f, h, w)
            self._noise = torch.randn(shape, generator=self._rng).to(self.device, self.dtype)
        self.kv_cache.reset()
        reserve = getattr(self.kv_cache, "reserve", None)
        if reserve is not None and self.max_chunks is not None:
            # A global cache then holds one buffer for the whole stream (it never grows and copies).
            reserve(self.max_chunks * self.num_frames_per_chunk)
        self.decoder.reset()
        self._latents: dict[int, torch.Tensor] = {}  # absolute latent frame -> clean latents (b c 1 h w)
        self._pending_context: tuple[torch.Tensor, int] | None = None  # (clean chunk (b c k h w), offset)
        self._chunk_index = 0
        if self._next is not None:
            self.prompt, self._embeds = self._next
            self._next = None

    def set_prompt(self, prompt: str | Sequence[str]) -> None:
        """Switch the prompt at the next chunk boundary (or set the first prompt before chunk 0).

        The prompt is encoded now, so a bad prompt fails here and not mid-stream.

        Args:
            prompt: One prompt for every video of the batch, or one per video (`batch_size` of them).

        Raises:
            ValueError: an empty prompt, a list whose length is not `batch_size`, or embeddings whose batch
                is not `batch_size`.
        """
        prompts = [prompt] * self.batch_size if isinstance(prompt, str) else list(prompt)
        if len(prompts) != self.batch_size:
            raise ValueError(f"got {len(prompts)} prompts for batch_size={self.batch_size}")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompt must be a non-empty string, got {p!r}")
        with self.timings.measure("text", self.device):
            embeds = self.encode_prompt(prompts)
        if embeds.ndim != 3 or embeds.shape[0] != self.batch_size:
            raise ValueError(
                f"encode_prompt returned shape {tuple(embeds.shape)}, "
                f"expected (b n d) with b={self.batch_size}"
            )
        self._next = (prompts, embeds.to(self.device, self.dtype))
        if self._chunk_index == 0 and self._pending_context is None:
            self.prompt, self._embeds = self._next  # nothing generated yet: no re-cache needed
            self._next = None

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def next_chunk(self) -> torch.Tensor:
        """Generate and decode the next chunk.

        Returns:
            Pixel frames `(b F 3 H W)`, float32 in [0, 1], on the CPU: `F = 1 + 4 (k - 1)` for chunk 0,
            `4 k` afterwards. `timings` then holds this call's seconds: `model` (every generator forward
            of the call: the previous chunk's context pass, a re-cache on a prompt switch, the denoising
            steps) and `decode`.

        Raises:
            ValueError: no prompt set yet, or the stream already produced `max_chunks` chunks.
        """
        if self._embeds is None:
            raise ValueError("no prompt set: call set_prompt(prompt) before next_chunk()")
        if self.max_chunks is not None and self._chunk_index >= self.max_chunks:
            raise ValueError(
                f"the stream ended after max_chunks={self.max_chunks} chunks; reset() to restart"
            )
        t0 = time.perf_counter()
        self._flush_context()
        if self._next is not None:
            self._switch_prompt(*self._next)
            self._next = None
        offset = self._chunk_index * self.num_frames_per_chunk
        x0 = sample_chunk(
            self.model,
            self._chunk_noise(offset),
            self._embeds,
            schedule=self.schedule,
            generator=self._rng,
            kv_cache=self.kv_cache,
            frame_offset=offset,
        )
        sync_device(self.device)
        t1 = time.perf_counter()
        frames = self.decoder(x0.to(vae_dtype(self.vae)), frame_offset=offset).float().cpu()
        t2 = time.perf_counter()
        self._pending_context = (x0, offset)
        self._chunk_index += 1
        self.chunk_seconds = {"model": t1 - t0, "decode": t2 - t1}
        self.timings.denoise_s += t1 - t0
        self.timings.decode_s += t2 - t1
        self.timings.pixel_frames += int(frames.shape[1])
        if self.timings.first_frame_s is None:
            self.timings.first_frame_s = t2 - self._t_start
        return frames

    def start_clock(self, t0: float) -> None:
        """Measure the time to the first pixel frame from `t0` (a `time.perf_counter()` value, e.g. taken when
        the caller asked for the stream) instead of from the last `reset`."""
        self._t_start = t0

    def __iter__(self) -> StreamingGenerator:
        return self

    def __next__(self) -> torch.Tensor:
        if self.max_chunks is not None and self._chunk_index >= self.max_chunks:
            raise StopIteration
        return self.next_chunk()

    def _chunk_noise(self, offset: int) -> torch.Tensor:
        """The next chunk's initial noise `(b c k h w)`: its slice of the drawn noise, or a fresh draw.

        Drawn on the CPU generator, so a seed gives the same stream on every device.
        """
        k = self.num_frames_per_chunk
        if self._noise is not None:
            return self._noise[:, :, offset : offset + k]
        h, w = self.latent_size
        shape = (self.batch_size, self.latent_channels, k, h, w)
        return torch.randn(shape, generator=self._rng).to(self.device, self.dtype)

    def _flush_context(self) -> None:
        """Run the deferred context pass of the last chunk; keep only the latents a re-cache needs."""
        if self._pending_context is None:
            return
        x0, offset = self._pending_context
        self._pending_context = None
        context_pass(self.model, x0, self._embeds, kv_cache=self.kv_cache, frame_offset=offset)
        for i in range(x0.shape[2]):
            self._latents[offset + i] = x0[:, :, i : i + 1]
        needed = set(self.kv_cache.recache_frames())
        for j in [j for j in self._latents if j not in needed]:
            del self._latents[j]

    def _switch_prompt(self, prompts: list[str], embeds: torch.Tensor) -> None:
        """LongLive's KV re-cache: new cross K/V, and the held frames re-encoded under the new prompt (after
        the cache applied its `recache_sinks` rule: "resink" restarts it from the last W frames)."""
        self.kv_cache.reset_cross()
        held = self.kv_cache.prepare_recache()
        if held:
            clean = torch.cat([self._latents[j] for j in held], dim=2)  # (b c f h w), f = len(held)
            self.model.recache(clean, embeds, self.kv_cache)
        self.prompt, self._embeds = prompts, embeds

    def held_latent_bytes(self) -> int:
        """Bytes of the clean latents kept for a re-cache (at most `local_attn_size` frames with a window)."""
        return sum(t.numel() * t.element_size() for t in self._latents.values())
