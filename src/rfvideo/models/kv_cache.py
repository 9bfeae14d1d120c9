"""Key/value cache of the chunk-wise causal Wan generator: preallocated per-layer self-attention buffers
(rolling window, attention-sink frames) and per-layer cross-attention K/V.

Shapes (einops): `b` batch, `T` tokens per latent frame, `H` heads, `d` head dim, `l` tokens,
`n` text tokens, `s` buffer slots (frames) of capacity.

Window semantics (`CausalOptions`, shared with the block-causal mask in `attention.py`): with
`W = local_attn_size` and `S = sink_size`, a chunk whose last frame is `e - 1` sees the sink frames
`[0, S)` plus the most recent `W - S` frames `[e - (W - S), e)` (its own chunk included), so at most `W`
frames in all. `W = -1` means global attention (nothing is ever evicted). After a re-cache with
`recache_sinks="resink"` (LongLive's `global_sink: false`, `prepare_recache`) the cache holds the frames
`[a, e)` a stream started at frame `a = e - W` would hold: the sinks are the frames `[a, a + S)`
(`sink_start`, `sink_end`), and every rule below reads "sink frames" as those.

Storage: per layer one K and one V buffer `(b (s T) H d)`, allocated at the first write (when `T`, `H`,
`d` are known). Sink frame `j` lives in slot `j - sink_start`; non-sink frames form one contiguous run
of slots from slot `S` on (or a few slots later after a compaction), in frame order (slot of frame `j` =
`run_start + j - base`). A chunk's own K/V are written into the
slots right after its visible context, so attention reads one slice of the buffer:

- global attention: slots `[0, end + k)`, a view, nothing copied; the buffer grows geometrically (one
  copy per doubling) when a video runs past the reserved length (`reserve`).
- rolling window, no sinks: the slice from the first visible frame, a view. The capacity is
  `2 (W - S) + S + k` slots; when the run reaches the end, the held frames move back to slot `S`
  (one copy of the window every `(W - S) / k` chunks, outside attention).
- rolling window with sinks: after the window has rolled, the held frames just before the visible window
  (kept so that the last chunk can be overwritten) separate the sinks from it. The first no-grad call of a
  window position copies the sinks into the `S` slots right before the window (the *sink mirror*), saving
  what those slots held, so every read of that position is one slice (mirror, window + chunk), a view.
  Once per chunk that costs `2 S` frame copies per layer (save + mirror), instead of concatenating sinks,
  window and chunk on every layer call. The saved frames go back (`_restore`) before anything else needs
  them: a call at another window position, an EMA fold, a compaction, an overwrite, `frame_kv`,
  `overwrite_held`. Compaction leaves `max(0, S - k)` slots free before the run so that the mirror always
  fits after the first separation; where it does not fit the read is one cat of two slices.

Writes happen once per chunk (the t = 0 context pass) at the end of the held frames, or again at the
start frame of the last written chunk, which overwrites that chunk in place. With autograd enabled the
chunk's own K/V are never copied into a buffer's free tail (a later in-place write would corrupt a saved
tensor):
the block concatenates a copy of the context with them instead, exactly as the per-frame cache did.

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

from dataclasses import dataclass, field

import torch

from rfvideo.models.causal_options import CausalOptions

__all__ = ["CachePlan", "KVCache"]

_DEFAULT_GLOBAL_CHUNKS = 8  # initial global capacity (chunks) when no length was reserved


@dataclass
class CachePlan:
    """Where one cached forward of `num_frames` frames at `frame_offset` reads and writes (buffer slots)."""

    frame_offset: int
    num_frames: int
    write: bool
    sink_frames: int
    """Visible sink frames, in slots `[0, sink_frames)`."""
    window: tuple[int, int]
    """Slots `[start, stop)` of the visible non-sink frames (empty when start == stop)."""
    own_slot: int | None
    """First slot of this call's own frames (right after the visible context); None when those slots
    hold frames that must survive the call (a read behind the last written frame)."""
    own_in_buffer: bool
    """This call's own K/V go into the buffer slots right after its context and attention reads context +
    own as one slice (no grad, free slots, the buffer's dtype and device); else they are concatenated."""
    written: set[int] = field(default_factory=set)
    """Layers this call has written (a checkpoint recompute must not write twice)."""
    mirror: bool = False
    """A copy of the sinks sits right before the read run (`window[0]`, or `own_slot` with no window):
    the in-buffer read is one slice."""

    @property
    def context_frames(self) -> int:
        """Cached frames visible to this call (sinks included)."""
        return self.sink_frames + self.window[1] - self.window[0]


class KVCache:
    """Self- and cross-attention K/V of every transformer layer for one batch of prompts.

    Args:
        num_layers: Number of transformer blocks.
        batch_size: Batch size of every call that uses this cache.
        options: The model's causal options (chunk size, window, sinks, eviction, RoPE mode).
        device: Device the buffers live on (defaults to the device of the first write).
        dtype: Dtype the buffers are stored in (defaults to the dtype of the first write).
        max_frames: Frames to reserve for a global cache (grows past it); see `reserve`.
    """

    def __init__(
        self,
        num_layers: int,
        *,
        batch_size: int,
        options: CausalOptions | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_frames: int | None = None,
    ) -> None:
        if num_layers < 1 or batch_size < 1:
            raise ValueError(f"num_layers ({num_layers}) and batch_size ({batch_size}) must be >= 1")
        self.options = options if options is not None else CausalOptions()
        self.num_layers = num_layers
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self._reserved = max_frames
        self.stats: dict[str, int] = {}
        self.reset()

    # ------------------------------------------------------------------ options
    @property
    def num_frames_per_chunk(self) -> int:
        return self.options.num_frames_per_chunk

    @property
    def local_attn_size(self) -> int:
        return self.options.local_attn_size

    @property
    def sink_size(self) -> int:
        return self.options.sink_size

    @property
    def rope_mode(self) -> str:
        return self.options.rope_mode

    @property
    def window_frames(self) -> int | None:
        """Non-sink frames visible to a chunk incl. itself (`W - S`), None when global."""
        return self.options.window_frames

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every cached frame and the cross-attention K/V (the buffers are released too)."""
        self.k: list[torch.Tensor] | None = None  # per layer (b (s T) H d)
        self.v: list[torch.Tensor] | None = None
        self.capacity = 0  # slots (frames) per buffer
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * self.num_layers
        self.tokens_per_frame: int | None = None
        self.last_chunk_start: int | None = None
        self.end_frame = 0  # one past the last written frame
        self.sink_start = 0  # first sink frame (moves only with recache_sinks="resink")
        self.first_frame = 0  # first held non-sink frame (>= sink_end once frames are evicted)
        self.base = self.sink_size  # the non-sink frame stored in slot `run_start`
        self._run_start = self.sink_size
        self._mirror: int | None = None  # slot of the sink mirror ([m, m + S) hold a copy of the sinks)
        self._saved: tuple[int, list[torch.Tensor]] | None = None  # (slot, what the mirror covered)
        self._pending: tuple[int, int] | None = None
        self.stats = {
            "read_copy_bytes": 0,
            "fold_bytes": 0,
            "maintenance_copy_bytes": 0,
            "mirror_copy_bytes": 0,
            "reads": 0,
        }

    def reset_cross(self) -> None:
        """Drop the cross-attention K/V, so that the next call rebuilds them from its text."""
        self.cross = [None] * self.num_layers

    def reserve(self, num_frames: int) -> None:
        """Size a global cache for a video of `num_frames` latent frames (no effect with a window)."""
        if num_frames < 1:
            raise ValueError(f"reserve needs num_frames >= 1, got {num_frames}")
        self._reserved = max(self._reserved or 0, num_frames)
        if self.k is not None and self.window_frames is None and num_frames > self.capacity:
            self._grow(num_frames)

    def check_batch(self, batch_size: int) -> None:
        if batch_size != self.batch_size:
            raise ValueError(f"KVCache was built for batch_size={self.batch_size}, got batch {batch_size}")

    @property
    def sink_end(self) -> int:
        """One past the last sink frame (`S` unless a "resink" re-cache moved the sinks)."""
        return self.sink_start + self.sink_size

    def held_frames(self) -> list[int]:
        """Absolute indices of the frames held, ascending (sinks first)."""
        sinks = list(range(self.sink_start, min(self.sink_end, self.end_frame)))
        return sinks + list(range(max(self.first_frame, self.sink_end), self.end_frame))

    def num_cached_frames(self) -> int:
        """Frames currently held (sinks included)."""
        return len(self.held_frames())

    def slot(self, frame: int) -> int:
        """Buffer slot of a (held or about to be written) frame."""
        return frame - self.sink_start if frame < self.sink_end else self._run_start + frame - self.base

    def visible_frames(self, frame_offset: int, num_frames: int) -> tuple[list[int], list[int]]:
        """Cached (sink frames, window frames) that a chunk at `frame_offset` attends to, in order."""
        held = self.held_frames()
        sinks = [j for j in held if j < self.sink_end and j < frame_offset]
        lo = -1 if self.window_frames is None else frame_offset + num_frames - self.window_frames
        window = [j for j in held if self.sink_end <= j < frame_offset and j >= lo]
        return sinks, window

    # ------------------------------------------------------------------ planning a call
    def plan(
        self,
        frame_offset: int,
        num_frames: int,
        tokens_per_frame: int,
        *,
        write: bool,
        like: torch.Tensor,
    ) -> CachePlan:
        """Prepare one cached call and say which slots it reads and writes: the one path of every read
        and write (the model's forward, through one `ChunkKV` handle per layer, then `end_write`).

        Args:
            frame_offset: Absolute index of the call's first frame.
            num_frames: Frames in the call.
            tokens_per_frame: Tokens per frame (fixed for the cache's lifetime until `reset`).
            write: The call stores its K/V (append at the end or overwrite the last chunk).
            like: A tensor shaped `(b l H d)` in the dtype and on the device attention runs with.

        Raises:
            ValueError: another batch size or token count than the cache holds, or a write that neither
                appends nor overwrites the last written chunk.
        """
        # 1. validate (nothing has changed when this raises), then make the write pending
        self._check_call(frame_offset, num_frames, tokens_per_frame, write=write, batch_size=like.shape[0])
        if write:
            self._start_write(frame_offset, num_frames, tokens_per_frame)
        # 2. Reward Forcing (Lu): the chunk that needs room folds the frames it cannot see into the sinks
        # before it attends (the default folds them when that chunk is written, `end_write`)
        if self._folds_before_attend() and frame_offset == self.end_frame and self.k is not None:
            assert self.window_frames is not None
            self._evict(frame_offset + num_frames - self.window_frames)
        # 3. allocate, grow or compact so that the call's own frames fit right after its context
        own_slot = self._room_for_own(frame_offset, num_frames, write=write, like=like)
        # 4. the slots it reads
        sinks, window = self.visible_frames(frame_offset, num_frames)
        win = (self.slot(window[0]), self.slot(window[-1]) + 1) if window else (0, 0)
        own_in_buffer = (
            own_slot is not None
            and not torch.is_grad_enabled()
            and self.k is not None
            and self.k[0].dtype == like.dtype
            and self.k[0].device == like.device
        )
        # 5. the sink mirror of this call's read run, when the sinks do not adjoin it and fit before it
        mirror = self._sync_sink_mirror(win[0] if window else own_slot, len(sinks), own_in_buffer)
        return CachePlan(
            frame_offset=frame_offset,
            num_frames=num_frames,
            write=write,
            sink_frames=len(sinks),
            window=win,
            own_slot=own_slot,
            own_in_buffer=own_in_buffer,
            mirror=mirror,
        )

    def _check_call(
        self, frame_offset: int, num_frames: int, tokens_per_frame: int, *, write: bool, batch_size: int
    ) -> None:
        """Raise before a cached call changes anything: batch, tokens per frame, where a write lands."""
        self.check_batch(batch_size)
        if self.tokens_per_frame is not None and tokens_per_frame != self.tokens_per_frame:
            raise ValueError(
                f"KVCache holds {self.tokens_per_frame} tokens per frame, got {tokens_per_frame}; "
                "reset() first"
            )
        if not write:
            return
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
        if overwrite and self.window_frames is not None:
            lost = max(self.sink_end, frame_offset + num_frames - self.window_frames)
            if self.first_frame > lost:
                raise ValueError(
                    f"cannot overwrite the chunk at frame {frame_offset}: sink_fold='before_attend' already "
                    f"evicted frames it saw (first held frame {self.first_frame})"
                )

    def _start_write(self, frame_offset: int, num_frames: int, tokens_per_frame: int) -> None:
        """Make a validated write pending (`end_write` commits it)."""
        if frame_offset == self.last_chunk_start:
            self._restore()  # the sink mirror may cover the frames the overwritten chunk saw
        self.tokens_per_frame = tokens_per_frame
        self._pending = (frame_offset, num_frames)

    def _room_for_own(
        self, frame_offset: int, num_frames: int, *, write: bool, like: torch.Tensor
    ) -> int | None:
        """Allocate (first write), grow or compact the buffers so that the call's own frames fit right after
        the held ones; returns their first slot, or None when those slots hold frames that must survive
        the call (a read behind the last written frame) or nothing is allocated yet."""
        if write:
            if self.k is None:
                self._allocate(like, frame_offset + num_frames)
            if frame_offset == self.end_frame:
                self._make_room(num_frames)
            return self.slot(frame_offset)
        if self.k is None:
            return None
        _, window = self.visible_frames(frame_offset, num_frames)
        if window and window[-1] != self.end_frame - 1:
            return None
        self._make_room(num_frames)
        return self._end_slot()

    def _sync_sink_mirror(self, start: int | None, sinks: int, own_in_buffer: bool) -> bool:
        """Place the sink mirror right before the read run starting at slot `start` (undoing one placed for
        another run), where the call reads in the buffer, all `S` sinks are visible and they fit apart
        from the sinks themselves; returns whether the call reads through the mirror."""
        S = self.sink_size
        want = None
        if own_in_buffer and self.window_frames is not None and S and sinks == S and start is not None:
            want = start - S if start - S >= S else None
        if self._mirror != want:
            self._restore()
            if want is not None:
                self._place_mirror(want)
        return want is not None

    # ------------------------------------------------------------------ the sink mirror
    @torch.no_grad()
    def _place_mirror(self, slot: int) -> None:
        """Save slots `[slot, slot + S)` of every buffer, then copy the sinks there."""
        assert self.k is not None and self.v is not None and self._mirror is None
        T, S = self.tokens_per_frame, self.sink_size
        a, b = slot * T, (slot + S) * T
        bufs = (*self.k, *self.v)
        saved = [buf[:, a:b].clone() for buf in bufs]
        for buf in bufs:
            buf[:, a:b].copy_(buf[:, : S * T])
        self._mirror, self._saved = slot, (slot, saved)
        self.stats["mirror_copy_bytes"] += 2 * sum(t.nbytes for t in saved)

    @torch.no_grad()
    def _restore(self) -> None:
        """Put back the held frames the sink mirror covered (free slots stay as they are); drop the mirror."""
        if self._saved is None:
            self._mirror = None
            return
        assert self.k is not None and self.v is not None
        slot, saved = self._saved
        self._mirror = self._saved = None
        T, S = self.tokens_per_frame, self.sink_size
        lo = max(slot, self.slot(max(self.first_frame, self.sink_end)))  # held run: [slot(first), end slot)
        hi = min(slot + S, self._end_slot())
        if lo >= hi:
            return  # the covered frames have all been evicted since
        for buf, old in zip((*self.k, *self.v), saved, strict=True):
            buf[:, lo * T : hi * T].copy_(old[:, (lo - slot) * T : (hi - slot) * T])
            self.stats["mirror_copy_bytes"] += old[:, (lo - slot) * T : (hi - slot) * T].nbytes

    def _folds_before_attend(self) -> bool:
        o = self.options
        return o.sink_fold == "before_attend" and o.sink_eviction == "ema" and self.window_frames is not None

    def _end_slot(self) -> int:
        """The slot after the last held frame."""
        if self.end_frame <= self.sink_end:
            return self.end_frame - self.sink_start
        return self.slot(self.end_frame - 1) + 1

    def _make_room(self, num_frames: int) -> None:
        """Grow a global buffer, or compact a rolling one, so `num_frames` fit after the held frames."""
        if self.k is None or self._end_slot() + num_frames <= self.capacity:
            return
        if self.window_frames is None:
            self._grow(max(2 * self.capacity, self._end_slot() + num_frames))
            return
        # rolling: move the held run [first, end) back to slot S + gap, frame order kept
        self._restore()
        first = max(self.first_frame, self.sink_end)
        S, T = self.sink_size, self.tokens_per_frame
        dst_slot = S + self._gap()
        shift = self.slot(first) - dst_slot
        assert shift > 0, "a rolling buffer holds its window plus a chunk"
        n = (self.end_frame - first) * T
        for buf in (*self.k, *self.v):
            src, dst = (dst_slot + shift) * T, dst_slot * T
            # pieces no longer than the shift, so that source and target never overlap
            for done in range(0, n, shift * T):
                step = min(shift * T, n - done)
                buf[:, dst + done : dst + done + step].copy_(buf[:, src + done : src + done + step])
            self.stats["maintenance_copy_bytes"] += buf[:, :n].nbytes
        self.base, self._run_start = first, dst_slot

    def _gap(self) -> int:
        """Free slots a compaction leaves before the run, so that the sink mirror fits before the window."""
        if self.window_frames is None or not self.sink_size:
            return 0
        return max(0, self.sink_size - self.num_frames_per_chunk)

    def _capacity_for(self, num_frames: int) -> int:
        if self.window_frames is None:
            return max(num_frames, self._reserved or 0)
        return self.sink_size + self._gap() + 2 * self.window_frames + self.num_frames_per_chunk

    def _allocate(self, like: torch.Tensor, frames_needed: int) -> None:
        T = self.tokens_per_frame
        b, _, H, d = like.shape
        dtype = self.dtype or like.dtype
        device = self.device or like.device
        if self.window_frames is None and self._reserved is None:
            frames_needed = max(frames_needed, _DEFAULT_GLOBAL_CHUNKS * self.num_frames_per_chunk)
        self.capacity = max(self._capacity_for(frames_needed), frames_needed)
        shape = (b, self.capacity * T, H, d)
        self.k = [torch.empty(shape, device=device, dtype=dtype) for _ in range(self.num_layers)]
        self.v = [torch.empty(shape, device=device, dtype=dtype) for _ in range(self.num_layers)]

    def _grow(self, capacity: int) -> None:
        assert self.k is not None and self.v is not None
        T = self.tokens_per_frame
        used = self._end_slot() * T
        for bufs in (self.k, self.v):
            for i, old in enumerate(bufs):
                new = old.new_empty((old.shape[0], capacity * T, *old.shape[2:]))
                new[:, :used].copy_(old[:, :used])
                self.stats["maintenance_copy_bytes"] += old[:, :used].nbytes
                bufs[i] = new
        self.capacity = capacity

    # ------------------------------------------------------------------ reads and the own frames' write
    def _sinks_then_run(self, buf: torch.Tensor, plan: CachePlan, start: int, stop: int) -> torch.Tensor:
        """Sinks then the run `[start, stop)` of one buffer: a view, or one cat of two slices."""
        T = self.tokens_per_frame
        ns = plan.sink_frames
        if ns and start == ns:
            return buf[:, : stop * T]  # sinks adjoin the run
        if plan.mirror and plan.own_in_buffer and start - ns == self._mirror:
            return buf[:, (start - ns) * T : stop * T]  # the sink mirror adjoins the run
        run = buf[:, start * T : stop * T]
        if not ns:
            return run
        out = torch.cat([buf[:, : ns * T], run], 1)
        self.stats["read_copy_bytes"] += out.nbytes
        return out

    def context(self, layer: int, plan: CachePlan) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The call's visible cached K, V `(b l H d)` without its own frames, or None."""
        if plan.context_frames == 0 or self.k is None or self.v is None:
            return None
        start, stop = plan.window if plan.window[1] > plan.window[0] else (plan.sink_frames,) * 2
        return self._sinks_then_run(self.k[layer], plan, start, stop), self._sinks_then_run(
            self.v[layer], plan, start, stop
        )

    def context_and_own(self, layer: int, plan: CachePlan) -> tuple[torch.Tensor, torch.Tensor]:
        """Context and own K, V `(b l H d)` of an `own_in_buffer` call, read as one slice (a view unless the
        sinks lie apart and no mirror fits)."""
        assert self.k is not None and self.v is not None and plan.own_slot is not None
        self.stats["reads"] += 1
        start = plan.window[0] if plan.window[1] > plan.window[0] else plan.own_slot
        stop = plan.own_slot + plan.num_frames
        return self._sinks_then_run(self.k[layer], plan, start, stop), self._sinks_then_run(
            self.v[layer], plan, start, stop
        )

    @torch.no_grad()
    def store_own(self, layer: int, plan: CachePlan, k: torch.Tensor, v: torch.Tensor) -> None:
        """Copy a call's own K/V `(b (f T) H d)` into its slots (the write target or the free tail)."""
        assert self.k is not None and self.v is not None and plan.own_slot is not None
        T = self.tokens_per_frame
        start, stop = plan.own_slot * T, (plan.own_slot + plan.num_frames) * T
        self.k[layer][:, start:stop].copy_(k)
        self.v[layer][:, start:stop].copy_(v)
        if not plan.write:
            self.stats["fold_bytes"] += k.nbytes + v.nbytes

    # ------------------------------------------------------------------ committing a write
    def end_write(self) -> None:
        """Commit the pending chunk write (once, after every layer has written), then evict."""
        assert self._pending is not None
        frame_offset, num_frames = self._pending
        self.last_chunk_start = frame_offset
        self.end_frame = max(self.end_frame, frame_offset + num_frames)
        self._pending = None
        if self.window_frames is None or self.k is None:
            return
        # Frames no later chunk can see; depends only on the chunk position, so overwriting the last
        # chunk evicts nothing new (the EMA is never folded twice).
        self._evict(frame_offset + num_frames - self.window_frames)

    @torch.no_grad()
    def _evict(self, threshold: int) -> None:
        """Drop the held non-sink frames `< threshold`, folding them into EMA sinks first.

        `partial_eviction="ema"`: frame j folds into sink `(j - sink_start) % S`, in frame order.
        `"overwrite"` (Reward Forcing (Lu)): exactly S frames fold as one block (the i-th into sink i); any
        other count overwrites the first `min(count, S)` sinks with the oldest evicted frames.
        """
        first = max(self.first_frame, self.sink_end)
        if threshold <= first:
            return
        S, T = self.sink_size, self.tokens_per_frame
        assert self.k is not None and self.v is not None
        if self.options.sink_eviction == "ema" and S > 0:
            self._restore()  # the fold reads the evicted frames and changes the sinks
            decay = self.options.sink_ema_decay
            evicted = list(range(first, threshold))
            if self.options.partial_eviction == "overwrite" and len(evicted) != S:
                for s, j in enumerate(evicted[:S]):
                    e = self.slot(j)
                    for buf in (*self.k, *self.v):
                        buf[:, s * T : (s + 1) * T].copy_(buf[:, e * T : (e + 1) * T])
            else:
                by_block = self.options.partial_eviction == "overwrite"
                for i, j in enumerate(evicted):
                    s, e = (i if by_block else (j - self.sink_start) % S), self.slot(j)
                    for buf in (*self.k, *self.v):
                        buf[:, s * T : (s + 1) * T].mul_(decay).add_(
                            buf[:, e * T : (e + 1) * T], alpha=1.0 - decay
                        )
        self.first_frame = threshold

    # ------------------------------------------------------------------ cross-attention
    def get_cross(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.cross[layer]

    @torch.no_grad()
    def set_cross(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        self.cross[layer] = (k.detach(), v.detach())

    # ------------------------------------------------------------------ introspection
    def frame_kv(self, layer: int, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored K, V `(b T H d)` of one held frame (views)."""
        if frame not in self.held_frames() or self.k is None or self.v is None:
            raise ValueError(f"frame {frame} is not held (held: {self.held_frames()})")
        self._restore()
        T, s = self.tokens_per_frame, self.slot(frame)
        return self.k[layer][:, s * T : (s + 1) * T], self.v[layer][:, s * T : (s + 1) * T]

    def held_sink_frames(self) -> int:
        """Sink frames currently held."""
        return max(0, min(self.sink_end, self.end_frame) - self.sink_start)

    def has_rolled(self) -> bool:
        """Whether the window has evicted a frame (the held frames are no longer contiguous from the first
        sink)."""
        return self.first_frame > self.sink_end

    # ------------------------------------------------------------------ prompt-switch re-cache
    def _resink_start(self) -> int | None:
        """First frame of the restarted cache under `recache_sinks="resink"` (`end_frame - W`), None when the
        rule re-encodes the held frames as they are (any other option, global attention, or at most `W`
        frames written: then the held frames already are the last ones, from frame 0)."""
        W = self.local_attn_size
        if self.options.recache_sinks != "resink" or W == -1 or self.end_frame <= W:
            return None
        return self.end_frame - W

    def recache_frames(self) -> list[int]:
        """Frames whose clean latents a prompt-switch re-cache needs now (what a stream must keep): the held
        frames, or with `recache_sinks="resink"` once more than `W` frames were written, the last `W`."""
        start = self._resink_start()
        return self.held_frames() if start is None else list(range(start, self.end_frame))

    @torch.no_grad()
    def prepare_recache(self) -> list[int]:
        """Apply the re-cache rule of `recache_sinks` to the bookkeeping; returns the frames to re-encode,
        `held_frames()` afterwards (`CausalWanTransformer.recache` takes their clean latents in that order).

        "reencode" / "keep": nothing changes. "resink" (LongLive's `global_sink: false`, past the window):
        the cache restarts at `a = end_frame - W`, holding `[a, end_frame)` as a stream started at frame
        `a` would: the frames `[a, a + S)` are the sinks (slots `[0, S)`), the rest the run from slot `S`,
        and the old sinks are dropped. Their stored K/V are stale until the re-cache overwrites every held
        frame (with `recache_visibility="all_held"`, at their absolute positions).
        """
        start = self._resink_start()
        if start is not None and start != self.sink_start:
            if self._pending is not None:
                raise ValueError("prepare_recache during a cache write (end_write first)")
            self._restore()  # the sink mirror is placed for the old layout
            self.sink_start = start
            self.first_frame = self.base = self.sink_end
            self._run_start = self.sink_size
        return self.held_frames()

    @torch.no_grad()
    def overwrite_held(self, layer: int, k: torch.Tensor, v: torch.Tensor, *, sinks: bool = True) -> None:
        """Overwrite every held frame's K/V with `(b (f T) H d)` given for `held_frames()` in order
        (`sinks=False`: for the held non-sink frames only; the sinks keep their K/V).

        Raises:
            ValueError: a "resink" re-cache past the window before `prepare_recache` (the frames to re-encode
                are not the held ones yet; nothing is written).
        """
        assert self.k is not None and self.v is not None
        held = self.held_frames()
        if self.recache_frames() != held:
            raise ValueError(
                f"recache_sinks='resink': call prepare_recache() before re-encoding (it re-encodes frames "
                f"{self.recache_frames()}, the cache holds {held})"
            )
        self._restore()
        T = self.tokens_per_frame
        ns = self.held_sink_frames()
        if not sinks:
            held = held[ns:]
        if k.shape[1] != len(held) * T:
            raise ValueError(f"overwrite_held got {k.shape[1] // T} frames for {len(held)} held frames")
        # sinks in slots [0, ns), the run contiguous from slot(first)
        pieces = [(0, 0, ns)] if ns and sinks else []
        if not sinks:
            ns = 0
        if len(held) > ns:
            pieces.append((ns, self.slot(held[ns]), len(held) - ns))
        for src, dst, n in pieces:
            self.k[layer][:, dst * T : (dst + n) * T].copy_(k[:, src * T : (src + n) * T])
            self.v[layer][:, dst * T : (dst + n) * T].copy_(v[:, src * T : (src + n) * T])

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the cache holds (for tests and memory accounting)."""
        out: list[torch.Tensor] = []
        if self.k is not None and self.v is not None:
            out += [*self.k, *self.v]
        for kv in self.cross:
            if kv is not None:
                out += list(kv)
        return out
