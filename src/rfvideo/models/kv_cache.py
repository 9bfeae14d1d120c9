"""Key/value cache of the chunk-wise causal Wan generator: per-layer self-attention frames (with a
rolling window and attention-sink frames) and per-layer cross-attention K/V.

Shapes (einops): `b` batch, `T` tokens per latent frame, `h` heads, `d` head dim, `l` tokens.

Window semantics (shared with the block-causal mask in `causal_wan.py`): with `W = local_attn_size`
and `S = sink_size`, a chunk whose last frame is `e - 1` sees the sink frames `[0, S)` plus the most
recent `W - S` frames `[e - (W - S), e)` (its own chunk included), so at most `W` frames in all.
`W = -1` means global attention (nothing is ever evicted).

Storage is one tensor pair per frame (`(b T h d)` each), held in a dict keyed by absolute frame index,
so an evicted frame is really released to the allocator and a rolling window keeps memory constant.

EMA-sink (Lu et al., arXiv 2512.04678), exact per-token rule used here: frames leave the window in
increasing frame order; when non-sink frame `j` is evicted, sink slot `s = j % S` is updated token by
token, for keys and values alike, `sink[s][:, t] <- decay * sink[s][:, t] + (1 - decay) * evicted_j[:, t]`
for every token `t` of the frame. (A chunk of `S` frames evicted together thus folds frame-by-frame
onto the `S` sink frames.) With `rope_mode="absolute"` the stored keys are already rotated, so an EMA
mixes keys rotated at different positions; use `rope_mode="relative"` with EMA.

RoPE: `"absolute"` stores keys rotated at their absolute frame position; `"relative"` stores unrotated
keys and the model rotates them on read at positions sinks `0..S'-1`, then the visible window frames
contiguously, then the current chunk (so video length is unbounded by the RoPE table).
"""

from __future__ import annotations

import torch

_ROPE_MODES = ("absolute", "relative")
_EVICTIONS = ("drop", "ema")


class KVCache:
    """Self- and cross-attention K/V of every transformer layer for one batch of prompts.

    Cache tensors are always detached; writing happens once per chunk (the t = 0 context pass) or
    again at the start frame of the last written chunk, which overwrites that chunk in place.

    Args:
        num_layers: Number of transformer blocks.
        batch_size: Batch size of every call that uses this cache.
        num_frames_per_chunk: Latent frames per chunk.
        local_attn_size: Frames visible to a chunk including itself and the sinks; -1 = global.
        sink_size: Number of leading latent frames kept as attention sinks.
        rope_mode: "absolute" or "relative" (see module docstring).
        sink_eviction: "drop" (evicted frames are discarded) or "ema" (folded into the sinks).
        sink_ema_decay: Decay of the EMA-sink update.
        device: Device the cached tensors live on (defaults to the device of the first write).
        dtype: Dtype the cached tensors are stored in (defaults to the dtype of the first write).
    """

    def __init__(
        self,
        num_layers: int,
        *,
        batch_size: int,
        num_frames_per_chunk: int = 3,
        local_attn_size: int = -1,
        sink_size: int = 0,
        rope_mode: str = "absolute",
        sink_eviction: str = "drop",
        sink_ema_decay: float = 0.99,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        validate_cache_options(
            num_frames_per_chunk=num_frames_per_chunk,
            local_attn_size=local_attn_size,
            sink_size=sink_size,
            rope_mode=rope_mode,
            sink_eviction=sink_eviction,
            sink_ema_decay=sink_ema_decay,
        )
        if num_layers < 1 or batch_size < 1:
            raise ValueError(f"num_layers ({num_layers}) and batch_size ({batch_size}) must be >= 1")
        self.num_layers = num_layers
        self.batch_size = batch_size
        self.num_frames_per_chunk = num_frames_per_chunk
        self.local_attn_size = local_attn_size
        self.sink_size = sink_size
        self.rope_mode = rope_mode
        self.sink_eviction = sink_eviction
        self.sink_ema_decay = float(sink_ema_decay)
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self.reset()

    def reset(self) -> None:
        """Forget every cached frame and the cross-attention K/V."""
        # frames[layer][j] = (k, v), each (b T h d); sinks live here too (j < sink_size).
        self.frames: list[dict[int, tuple[torch.Tensor, torch.Tensor]]] = [{} for _ in range(self.num_layers)]
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * self.num_layers
        self.tokens_per_frame: int | None = None
        self.last_chunk_start: int | None = None
        self.end_frame = 0  # one past the last written frame
        self._pending: tuple[int, int] | None = None

    # ------------------------------------------------------------------ window bookkeeping
    @property
    def window_frames(self) -> int | None:
        """Non-sink frames visible to a chunk incl. itself (`W - S`), None when global."""
        return None if self.local_attn_size == -1 else self.local_attn_size - self.sink_size

    def visible_frames(self, frame_offset: int, num_frames: int) -> tuple[list[int], list[int]]:
        """Cached (sink frames, window frames) that a chunk at `frame_offset` attends to, in order."""
        present = sorted(self.frames[0].keys())
        sinks = [j for j in present if j < self.sink_size and j < frame_offset]
        lo = -1 if self.window_frames is None else frame_offset + num_frames - self.window_frames
        window = [j for j in present if self.sink_size <= j < frame_offset and j >= lo]
        return sinks, window

    def check_batch(self, batch_size: int) -> None:
        if batch_size != self.batch_size:
            raise ValueError(f"KVCache was built for batch_size={self.batch_size}, got batch {batch_size}")

    # ------------------------------------------------------------------ reads
    def read(
        self, layer: int, frame_offset: int, num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Concatenated cached K and V `(b l h d)` visible to the chunk, or None when nothing is."""
        sinks, window = self.visible_frames(frame_offset, num_frames)
        idx = sinks + window
        if not idx:
            return None
        store = self.frames[layer]
        k = torch.cat([store[j][0] for j in idx], dim=1)
        v = torch.cat([store[j][1] for j in idx], dim=1)
        return k, v

    # ------------------------------------------------------------------ writes
    def begin_write(self, frame_offset: int, num_frames: int, tokens_per_frame: int) -> None:
        """Validate a chunk write at `frame_offset`: append at the end or overwrite the last chunk."""
        if self.tokens_per_frame is not None and tokens_per_frame != self.tokens_per_frame:
            raise ValueError(
                f"KVCache holds {self.tokens_per_frame} tokens per frame, got {tokens_per_frame}; "
                "reset() first"
            )
        overwrite = frame_offset == self.last_chunk_start
        if not overwrite and frame_offset != self.end_frame:
            raise ValueError(
                f"cache write at frame_offset={frame_offset}: expected {self.end_frame} (append) or "
                f"{self.last_chunk_start} (overwrite the last written chunk)"
            )
        if overwrite and self.end_frame - frame_offset != num_frames:
            raise ValueError(
                f"overwriting the chunk at frame {frame_offset} with {num_frames} frames, but it holds "
                f"{self.end_frame - frame_offset}"
            )
        self.tokens_per_frame = tokens_per_frame
        self._pending = (frame_offset, num_frames)

    @torch.no_grad()
    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store one layer's chunk K/V `(b (f T) h d)` at the pending offset, then evict."""
        assert self._pending is not None, "begin_write() must precede write()"
        frame_offset, num_frames = self._pending
        T = self.tokens_per_frame
        dtype = self.dtype or k.dtype
        device = self.device or k.device
        store = self.frames[layer]
        for i in range(num_frames):
            # clone: a stored frame must not keep the whole projection buffer alive, and sinks are
            # updated in place by the EMA.
            kf = k[:, i * T : (i + 1) * T].detach().to(device=device, dtype=dtype).clone()
            vf = v[:, i * T : (i + 1) * T].detach().to(device=device, dtype=dtype).clone()
            store[frame_offset + i] = (kf, vf)
        if self.window_frames is None:
            return
        # Frames no later chunk can see; depends only on the chunk position, so overwriting the last
        # chunk evicts nothing new (the EMA is never folded twice).
        threshold = frame_offset + num_frames - self.window_frames
        for j in sorted(store.keys()):
            if j < self.sink_size or j >= threshold:
                continue
            ek, ev = store.pop(j)
            if self.sink_eviction == "ema" and self.sink_size > 0:
                slot = j % self.sink_size
                if slot in store:
                    sk, sv = store[slot]
                    decay = self.sink_ema_decay
                    sk.mul_(decay).add_(ek, alpha=1.0 - decay)
                    sv.mul_(decay).add_(ev, alpha=1.0 - decay)

    def end_write(self) -> None:
        """Commit the pending chunk write (called once after every layer has written)."""
        assert self._pending is not None
        frame_offset, num_frames = self._pending
        self.last_chunk_start = frame_offset
        self.end_frame = frame_offset + num_frames
        self._pending = None

    # ------------------------------------------------------------------ cross-attention
    def get_cross(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.cross[layer]

    @torch.no_grad()
    def set_cross(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.cross[layer] = (k.detach(), v.detach())

    # ------------------------------------------------------------------ introspection
    def num_cached_frames(self) -> int:
        """Frames currently held (sinks included)."""
        return len(self.frames[0])

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds (for tests and memory accounting)."""
        out: list[torch.Tensor] = []
        for store in self.frames:
            for k, v in store.values():
                out += [k, v]
        for kv in self.cross:
            if kv is not None:
                out += list(kv)
        return out


def validate_cache_options(
    *,
    num_frames_per_chunk: int,
    local_attn_size: int,
    sink_size: int,
    rope_mode: str,
    sink_eviction: str,
    sink_ema_decay: float,
) -> None:
    """Raise ValueError naming the offending causal option."""
    if num_frames_per_chunk < 1:
        raise ValueError(f"num_frames_per_chunk must be >= 1, got {num_frames_per_chunk}")
    if sink_size < 0:
        raise ValueError(f"sink_size must be >= 0, got {sink_size}")
    if local_attn_size != -1 and local_attn_size - sink_size < num_frames_per_chunk:
        raise ValueError(
            f"local_attn_size ({local_attn_size}) must be -1 or >= sink_size ({sink_size}) + "
            f"num_frames_per_chunk ({num_frames_per_chunk})"
        )
    if rope_mode not in _ROPE_MODES:
        raise ValueError(f"rope_mode must be one of {_ROPE_MODES}, got {rope_mode!r}")
    if sink_eviction not in _EVICTIONS:
        raise ValueError(f"sink_eviction must be one of {_EVICTIONS}, got {sink_eviction!r}")
    if not 0.0 <= sink_ema_decay <= 1.0:
        raise ValueError(f"sink_ema_decay must be in [0, 1], got {sink_ema_decay}")
