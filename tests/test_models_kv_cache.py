"""KVCache bookkeeping: append / overwrite / rolling window / EMA-sink / reset, on synthetic K/V.

Shapes: `b` batch, `T` tokens per frame, `h` heads, `d` head dim.
"""

from __future__ import annotations

import pytest
import torch

from rfvideo.models import KVCache

B, T, H, D = 2, 4, 2, 3


def _chunk(g: torch.Generator, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, frames * T, H, D, generator=g), torch.randn(B, frames * T, H, D, generator=g)


def _write(cache: KVCache, offset: int, k: torch.Tensor, v: torch.Tensor) -> None:
    cache.begin_write(offset, k.shape[1] // T, T)
    for layer in range(cache.num_layers):
        cache.write(layer, k + layer, v + layer)
    cache.end_write()


def test_append_read_overwrite_and_reset():
    g = torch.Generator().manual_seed(0)
    cache = KVCache(2, batch_size=B, num_frames_per_chunk=3)
    k0, v0 = _chunk(g)
    k1, v1 = _chunk(g)
    _write(cache, 0, k0, v0)
    _write(cache, 3, k1, v1)
    k, v = cache.read(1, 6, 3)
    assert torch.equal(k, torch.cat([k0, k1], 1) + 1) and torch.equal(v, torch.cat([v0, v1], 1) + 1)
    # reading for the overwrite pass of chunk 1 sees only chunk 0
    k, _ = cache.read(0, 3, 3)
    assert torch.equal(k, k0)
    k2, v2 = _chunk(g)
    _write(cache, 3, k2, v2)  # overwrite the last chunk
    assert cache.end_frame == 6 and cache.num_cached_frames() == 6
    assert torch.equal(cache.read(0, 6, 3)[0], torch.cat([k0, k2], 1))
    with pytest.raises(ValueError, match="frame_offset=0"):
        cache.begin_write(0, 3, T)  # only the last chunk may be overwritten
    with pytest.raises(ValueError, match="holds 4 tokens per frame, got 5"):
        cache.begin_write(6, 3, 5)
    cache.reset()
    assert cache.read(0, 0, 3) is None and cache.end_frame == 0 and not cache.tensors()


def test_rolling_window_keeps_sinks_and_frees_evicted_frames():
    g = torch.Generator().manual_seed(1)
    cache = KVCache(1, batch_size=B, num_frames_per_chunk=3, local_attn_size=9, sink_size=3)
    chunks = [_chunk(g) for _ in range(5)]
    for i, (k, v) in enumerate(chunks):
        _write(cache, 3 * i, k, v)
        # sinks + the W - S = 6 most recent frames, never more
        assert cache.num_cached_frames() <= 9
    assert sorted(cache.frames[0]) == [0, 1, 2, 9, 10, 11, 12, 13, 14]
    # the next chunk [15, 18) sees sinks and frames [12, 15)
    k, _ = cache.read(0, 15, 3)
    assert torch.equal(k, torch.cat([chunks[0][0], chunks[4][0]], 1))
    assert len(cache.tensors()) == 2 * 9


def test_ema_sink_equals_hand_computed_update():
    g = torch.Generator().manual_seed(2)
    decay = 0.9
    cache = KVCache(
        1, batch_size=B, num_frames_per_chunk=3, local_attn_size=6, sink_size=3, sink_eviction="ema",
        sink_ema_decay=decay,
    )  # fmt: skip
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
    k, v = cache.read(0, 12, 3)
    assert sorted(cache.frames[0]) == [0, 1, 2, 9, 10, 11]
    torch.testing.assert_close(k[:, : 3 * T], want_k)
    torch.testing.assert_close(v[:, : 3 * T], want_v)
    assert k.shape[1] == 3 * T  # W - S = 3 frames: the chunk [12, 15) sees only itself and the sinks
    # overwriting the last chunk folds nothing again
    _write(cache, 9, *chunks[3])
    torch.testing.assert_close(cache.read(0, 12, 3)[0][:, : 3 * T], want_k)


def test_writes_are_detached_and_options_validated():
    k = torch.randn(B, 3 * T, H, D, requires_grad=True)
    cache = KVCache(1, batch_size=B, num_frames_per_chunk=3)
    _write(cache, 0, k * 2, k * 3)
    assert all(not t.requires_grad for t in cache.tensors())
    with pytest.raises(ValueError, match="rope_mode"):
        KVCache(1, batch_size=1, rope_mode="sideways")
    with pytest.raises(ValueError, match="sink_eviction"):
        KVCache(1, batch_size=1, sink_eviction="keep")
    with pytest.raises(ValueError, match="local_attn_size \\(4\\)"):
        KVCache(1, batch_size=1, num_frames_per_chunk=3, local_attn_size=4, sink_size=2)
    with pytest.raises(ValueError, match="batch_size=1"):
        KVCache(1, batch_size=1).check_batch(2)


def test_rolling_window_memory_is_constant_in_video_length():
    g = torch.Generator().manual_seed(3)

    def held_bytes(num_chunks: int) -> int:
        cache = KVCache(2, batch_size=B, num_frames_per_chunk=3, local_attn_size=9, sink_size=3)
        for i in range(num_chunks):
            _write(cache, 3 * i, *_chunk(g))
        return sum(t.untyped_storage().nbytes() for t in cache.tensors())

    assert held_bytes(20) == held_bytes(5) > 0
