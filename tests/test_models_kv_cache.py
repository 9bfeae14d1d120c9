"""KVCache bookkeeping: append / overwrite / rolling window / EMA-sink / reset, on synthetic K/V, through
the path the model uses (`KVCache.plan`, one `ChunkKV` handle per layer, `end_write`), against a naive
per-frame reference: what a cached call attends over (and its attention) equals the naive cache's
visible frames + the call's own.

RoPE is the model's concern: the handles get the identity rotation here, so stored keys equal the inputs.

Shapes: `b` batch, `T` tokens per frame, `h` heads, `d` head dim.
"""

from __future__ import annotations

import math

import pytest
import torch

from rfvideo.models import CausalOptions, KVCache
from rfvideo.models.attention import attention
from rfvideo.models.layer_kv import ChunkKV

B, T, H, D = 2, 4, 2, 3
NO_ROPE = (torch.ones(1, D), torch.zeros(1, D))  # placeholders: `_same` ignores them


def _same(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x


def _chunk(g: torch.Generator, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, frames * T, H, D, generator=g), torch.randn(B, frames * T, H, D, generator=g)


def _call(cache: KVCache, offset: int, layer_kv: list[tuple[torch.Tensor, torch.Tensor]], write: bool):
    """One cached call as the model makes it: plan, each layer's handle, then commit the write.

    Returns per layer the keys and values attended over: views of the buffer where the call reads one
    slice, except for an EMA write (attention consumes the read before the write commits; the EMA fold
    then changes the sinks, and puts back the frames the sink mirror covered, under a view taken here).
    """
    k0 = layer_kv[0][0]
    plan = cache.plan(offset, k0.shape[1] // T, T, write=write, like=k0)
    out = []
    for layer, (k, v) in enumerate(layer_kv):
        handle = ChunkKV(cache, layer, plan, rotate=_same, rope_ctx=NO_ROPE, rope_read=NO_ROPE)
        keys, values = handle.self_kv(k, v, NO_ROPE)
        if write and cache.options.sink_eviction == "ema":
            keys, values = keys.clone(), values.clone()
        out.append((keys, values))
    if write:
        cache.end_write()
    return out, plan


def _write(cache: KVCache, offset: int, k: torch.Tensor, v: torch.Tensor) -> None:
    """A context pass: layer `i` writes `k + i`, `v + i`."""
    _call(cache, offset, [(k + i, v + i) for i in range(cache.num_layers)], write=True)


def _visible(cache: KVCache, layer: int, offset: int, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The held K, V a chunk of `n` frames at `offset` sees (sinks first), read frame by frame."""
    sinks, window = cache.visible_frames(offset, n)
    if not sinks + window:
        return None
    ks, vs = zip(*(cache.frame_kv(layer, j) for j in sinks + window), strict=True)
    return torch.cat(ks, 1), torch.cat(vs, 1)


def test_append_read_overwrite_and_reset():
    g = torch.Generator().manual_seed(0)
    cache = KVCache(2, batch_size=B, options=CausalOptions(num_frames_per_chunk=3))
    k0, v0 = _chunk(g)
    k1, v1 = _chunk(g)
    _write(cache, 0, k0, v0)
    _write(cache, 3, k1, v1)
    k, v = _visible(cache, 1, 6, 3)
    assert torch.equal(k, torch.cat([k0, k1], 1) + 1) and torch.equal(v, torch.cat([v0, v1], 1) + 1)
    # the overwrite pass of chunk 1 attends over chunk 0 and itself
    k2, v2 = _chunk(g)
    attended, _ = _call(cache, 3, [(k2, v2), (k2 + 1, v2 + 1)], write=True)  # overwrite the last chunk
    assert torch.equal(attended[0][0], torch.cat([k0, k2], 1))
    assert torch.equal(attended[1][1], torch.cat([v0, v2], 1) + 1)
    assert cache.end_frame == 6 and cache.num_cached_frames() == 6
    assert torch.equal(_visible(cache, 0, 6, 3)[0], torch.cat([k0, k2], 1))
    with pytest.raises(ValueError, match="frame_offset=0"):
        cache.plan(0, 3, T, write=True, like=k0)  # only the last chunk may be overwritten
    with pytest.raises(ValueError, match="holds 4 tokens per frame, got 5"):
        cache.plan(6, 3, 5, write=True, like=k0)
    assert cache.held_frames() == list(range(6))  # the refused calls changed nothing
    cache.reset()
    assert _visible(cache, 0, 0, 3) is None and cache.end_frame == 0 and not cache.tensors()


def test_rolling_window_keeps_sinks_and_frees_evicted_frames():
    g = torch.Generator().manual_seed(1)
    cache = KVCache(1, batch_size=B, options=CausalOptions(local_attn_size=9, sink_size=3))
    chunks = [_chunk(g) for _ in range(5)]
    for i, (k, v) in enumerate(chunks):
        _write(cache, 3 * i, k, v)
        # sinks + the W - S = 6 most recent frames, never more
        assert cache.num_cached_frames() <= 9
    assert cache.held_frames() == [0, 1, 2, 9, 10, 11, 12, 13, 14]
    # the next chunk [15, 18) sees sinks and frames [12, 15)
    k, _ = _visible(cache, 0, 15, 3)
    assert torch.equal(k, torch.cat([chunks[0][0], chunks[4][0]], 1))
    # one K and one V buffer of sinks + twice the window + a chunk (frames), whatever the video length
    assert len(cache.tensors()) == 2 and cache.capacity == 3 + 2 * 6 + 3


def test_ema_sink_equals_hand_computed_update():
    g = torch.Generator().manual_seed(2)
    decay = 0.9
    options = CausalOptions(local_attn_size=6, sink_size=3, sink_eviction="ema", sink_ema_decay=decay)
    cache = KVCache(1, batch_size=B, options=options)
    chunks = [_chunk(g) for _ in range(4)]
    for i, (k, v) in enumerate(chunks):
        _write(cache, 3 * i, k, v)
    # window W - S = 3: writing chunk 2 evicts chunk 1 (frames 3..5 -> sink slots 0..2), chunk 3 evicts
    # chunk 2 (frames 6..8 -> slots 0..2); per token: sink <- decay * sink + (1 - decay) * evicted.
    want_k = chunks[0][0]
    want_v = chunks[0][1]
    for j in (1, 2):
        want_k = decay * want_k + (1 - decay) * chunks[j][0]
        want_v = decay * want_v + (1 - decay) * chunks[j][1]
    k, v = _visible(cache, 0, 12, 3)
    assert cache.held_frames() == [0, 1, 2, 9, 10, 11]
    torch.testing.assert_close(k[:, : 3 * T], want_k)
    torch.testing.assert_close(v[:, : 3 * T], want_v)
    assert k.shape[1] == 3 * T  # W - S = 3 frames: the chunk [12, 15) sees only itself and the sinks
    # overwriting the last chunk folds nothing again
    _write(cache, 9, *chunks[3])
    torch.testing.assert_close(_visible(cache, 0, 12, 3)[0][:, : 3 * T], want_k)


def test_writes_are_detached_and_options_validated():
    k = torch.randn(B, 3 * T, H, D, requires_grad=True)
    cache = KVCache(1, batch_size=B, options=CausalOptions(num_frames_per_chunk=3))
    _write(cache, 0, k * 2, k * 3)
    assert all(not t.requires_grad for t in cache.tensors())
    with pytest.raises(ValueError, match="rope_mode"):
        CausalOptions(rope_mode="sideways")
    with pytest.raises(ValueError, match="sink_eviction"):
        CausalOptions(sink_eviction="keep")
    with pytest.raises(ValueError, match="local_attn_size \\(4\\)"):
        CausalOptions(num_frames_per_chunk=3, local_attn_size=4, sink_size=2)
    with pytest.raises(ValueError, match="batch_size=1"):
        KVCache(1, batch_size=1).check_batch(2)


def test_rolling_window_memory_is_constant_in_video_length():
    g = torch.Generator().manual_seed(3)

    def held_bytes(num_chunks: int) -> int:
        cache = KVCache(2, batch_size=B, options=CausalOptions(local_attn_size=9, sink_size=3))
        for i in range(num_chunks):
            _write(cache, 3 * i, *_chunk(g))
        return sum(t.untyped_storage().nbytes() for t in cache.tensors())

    assert held_bytes(20) == held_bytes(5) > 0


class NaiveCache:
    """Per-frame dict reference of the cache semantics (module docstring of kv_cache.py)."""

    def __init__(self, options: CausalOptions):
        self.o = options
        self.frames: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.last: int | None = None
        self.end = 0

    def visible(self, offset: int, n: int) -> list[int]:
        w = self.o.window_frames
        lo = -1 if w is None else offset + n - w
        return [j for j in sorted(self.frames) if j < offset and (j < self.o.sink_size or j >= lo)]

    def read(self, offset: int, n: int):
        idx = self.visible(offset, n)
        if not idx:
            return None
        return torch.cat([self.frames[j][0] for j in idx], 1), torch.cat([self.frames[j][1] for j in idx], 1)

    def write(self, offset: int, k: torch.Tensor, v: torch.Tensor) -> None:
        n = k.shape[1] // T
        for i in range(n):
            self.frames[offset + i] = (k[:, i * T : (i + 1) * T].clone(), v[:, i * T : (i + 1) * T].clone())
        self.last, self.end = offset, max(self.end, offset + n)
        w, S = self.o.window_frames, self.o.sink_size
        if w is None:
            return
        for j in sorted(self.frames):
            if S <= j < offset + n - w:
                ek, ev = self.frames.pop(j)
                if self.o.sink_eviction == "ema" and S:
                    sk, sv = self.frames[j % S]
                    d = self.o.sink_ema_decay
                    self.frames[j % S] = (d * sk + (1 - d) * ek, d * sv + (1 - d) * ev)


MODES = {
    "global": CausalOptions(),
    "global_sink": CausalOptions(sink_size=2),
    "window": CausalOptions(local_attn_size=7),
    "window_sink": CausalOptions(local_attn_size=9, sink_size=3),
    "window_sink_ema": CausalOptions(local_attn_size=9, sink_size=3, sink_eviction="ema", sink_ema_decay=0.7),
    "window_is_chunk": CausalOptions(local_attn_size=5, sink_size=2),
}


def _cached_read(cache: KVCache, offset: int, k: torch.Tensor, v: torch.Tensor, write: bool):
    """What attention reads in a cached call of a one-layer cache: context + own K/V, and the plan."""
    ((keys, values),), plan = _call(cache, offset, [(k, v)], write)
    return keys, values, plan


def _naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over `(b l h d)` inputs, every key visible."""
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v)


@torch.no_grad()
@pytest.mark.parametrize("mode", sorted(MODES))
def test_buffers_equal_naive_per_frame_cache(mode):
    """Every read of a 12-chunk stream (4 denoising reads, an overwrite now and then, the write) equals
    the naive cache's visible frames + the chunk's own K/V; the held frames agree after every write."""
    options = MODES[mode]
    # EMA: the cache folds in place (mul_, add_), the reference out of place: rounding may differ
    tol = 1e-6 if options.sink_eviction == "ema" else 0.0

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and bool(torch.allclose(a, b, atol=tol, rtol=tol))

    g = torch.Generator().manual_seed(4)
    cache, ref = KVCache(1, batch_size=B, options=options), NaiveCache(options)
    for i in range(12):
        o = 3 * i
        for _ in range(4):
            k, v = _chunk(g)
            keys, values, plan = _cached_read(cache, o, k, v, write=False)
            want = ref.read(o, 3)
            want_k = k if want is None else torch.cat([want[0], k], 1)
            want_v = v if want is None else torch.cat([want[1], v], 1)
            assert same(keys, want_k) and same(values, want_v), (i, plan)
            # cached attention == uncached attention over the naive cache's frames + the chunk's own
            q = torch.randn(k.shape, generator=g)
            torch.testing.assert_close(
                attention(q, keys, values), _naive_attention(q, want_k, want_v), atol=1e-5, rtol=1e-5
            )
        if i % 4 == 3:  # write, then overwrite the same chunk with other values
            k, v = _chunk(g)
            _cached_read(cache, o, k, v, write=True)
            ref.write(o, k, v)
        k, v = _chunk(g)
        keys, values, _ = _cached_read(cache, o, k, v, write=True)
        want = ref.read(o, 3)
        assert same(keys, k if want is None else torch.cat([want[0], k], 1))
        ref.write(o, k, v)
        assert cache.held_frames() == sorted(ref.frames)
        for j in cache.held_frames():
            torch.testing.assert_close(cache.frame_kv(0, j)[0], ref.frames[j][0], atol=1e-6, rtol=1e-6)
    # a read behind the last chunk (not an overwrite) sees the frames before it, the held ones intact
    k, v = _chunk(g)
    keys, _, _ = _cached_read(cache, 30, k, v, write=False)
    want = ref.read(30, 3)
    assert same(keys, torch.cat([want[0], k], 1))
    assert same(cache.frame_kv(0, 33)[0], ref.frames[33][0])


@torch.no_grad()
@pytest.mark.parametrize("mode", ["global", "global_sink", "window"])
def test_reads_copy_nothing_without_separated_sinks(mode):
    """Global attention (and a window without sinks) reads one view of the buffer: no byte is copied."""
    g = torch.Generator().manual_seed(5)
    cache = KVCache(1, batch_size=B, options=MODES[mode], max_frames=30)
    for i in range(10):
        for write in (False, False, True):
            k, v = _chunk(g)
            keys, values, plan = _cached_read(cache, 3 * i, k, v, write=write)
            if cache.k is not None and plan.own_in_buffer:
                assert keys.untyped_storage().data_ptr() == cache.k[0].untyped_storage().data_ptr()
                assert values.untyped_storage().data_ptr() == cache.v[0].untyped_storage().data_ptr()
    # 30 calls, of which the two reads of chunk 0 before its write have no buffer to fold into
    assert cache.stats["read_copy_bytes"] == 0 and cache.stats["reads"] == 28
    if mode == "window":  # the window moves back to the buffer start now and then, outside attention
        assert 0 < cache.stats["maintenance_copy_bytes"]
    else:
        assert cache.stats["maintenance_copy_bytes"] == 0  # reserved: never grown


@torch.no_grad()
def test_global_buffer_grows_past_its_reservation():
    g = torch.Generator().manual_seed(6)
    cache, ref = KVCache(1, batch_size=B, max_frames=6), NaiveCache(CausalOptions())
    for i in range(5):
        k, v = _chunk(g)
        _cached_read(cache, 3 * i, k, v, write=True)
        ref.write(3 * i, k, v)
    assert cache.capacity >= 15 and cache.stats["maintenance_copy_bytes"] > 0
    assert torch.equal(_visible(cache, 0, 15, 3)[0], ref.read(15, 3)[0])


def test_wrong_batch_size_and_tokens_raise():
    cache = KVCache(1, batch_size=2)
    k = torch.randn(3, 3 * T, H, D, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="batch_size=2, got batch 3"):
        cache.plan(0, 3, T, write=True, like=k)
    _write(cache, 0, k[:2], k[:2])
    with pytest.raises(ValueError, match="holds 4 tokens per frame, got 2"):
        cache.plan(3, 3, 2, write=False, like=k[:2])


def test_reset_cross_keeps_frames():
    g = torch.Generator().manual_seed(7)
    cache = KVCache(2, batch_size=B)
    _write(cache, 0, *_chunk(g))
    cache.set_cross(1, *_chunk(g))
    cache.reset_cross()
    assert cache.get_cross(1) is None and cache.held_frames() == [0, 1, 2]


@torch.no_grad()
@pytest.mark.parametrize(
    "options",
    [
        CausalOptions(local_attn_size=9, sink_size=3),
        CausalOptions(local_attn_size=12, sink_size=3, sink_eviction="ema", sink_ema_decay=0.7),
        CausalOptions(num_frames_per_chunk=1, local_attn_size=8, sink_size=3),
        CausalOptions(local_attn_size=5, sink_size=2),
    ],
    ids=["window_sink", "ema", "sinks_wider_than_chunk", "window_is_chunk"],
)
def test_rolled_window_read_is_one_view_and_the_sink_mirror_is_undone(options):
    """Once the window has rolled, a no-grad read of sinks + window + chunk is one view of the buffer (the
    sinks mirrored right before the window); reads of the next chunk followed by an overwrite of the last
    one, or a read behind it, still see exactly the naive cache's frames (the covered frames come back)."""
    k = options.num_frames_per_chunk
    g = torch.Generator().manual_seed(7)
    cache, ref = KVCache(1, batch_size=B, options=options), NaiveCache(options)
    views = rolled = 0
    for i in range(14):
        o = k * i
        for write in (False, False, True):
            kk, vv = _chunk(g, k)
            keys, values, plan = _cached_read(cache, o, kk, vv, write=write)
            want = ref.read(o, k)
            assert torch.allclose(keys, kk if want is None else torch.cat([want[0], kk], 1), atol=1e-6)
            if write:
                ref.write(o, kk, vv)
            start = plan.window[0] if plan.window[1] > plan.window[0] else plan.own_slot
            separated = plan.sink_frames and plan.own_slot is not None and start != plan.sink_frames
            if separated and not write:
                rolled += 1
                if keys.untyped_storage().data_ptr() == cache.k[0].untyped_storage().data_ptr():
                    views += 1
        if i % 3 == 2:  # read the next chunk (mirror placed), then overwrite this one, then read behind
            _cached_read(cache, o + k, *_chunk(g, k), write=False)
            kk, vv = _chunk(g, k)
            keys, _, _ = _cached_read(cache, o, kk, vv, write=True)
            want = ref.read(o, k)
            assert torch.allclose(keys, kk if want is None else torch.cat([want[0], kk], 1), atol=1e-6)
            ref.write(o, kk, vv)
        assert cache.held_frames() == sorted(ref.frames)
        for j in cache.held_frames():
            torch.testing.assert_close(cache.frame_kv(0, j)[0], ref.frames[j][0], atol=1e-6, rtol=1e-6)
    assert rolled > 10
    if options.sink_eviction == "drop":  # every rolled read but the ones before the mirror first fits
        assert views >= rolled - 4 and cache.stats["mirror_copy_bytes"] > 0
