"""`StreamingGenerator`: the stream equals a hand-written sampler loop, a prompt switch re-caches the held
frames exactly as context passes under the new prompt would write them, and a rolling-window stream runs
at constant memory.

Legend: `b` batch, `c` latent channels, `k` frames per chunk, `h w` latent height/width, `F` pixel frames.
"""

from __future__ import annotations

import pytest
import torch

from rfvideo.pipeline import RFVideoPipeline
from rfvideo.sampling import FlowMatchSchedule, add_noise
from rfvideo.sampling.chunkwise import context_pass, denoise_step
from rfvideo.streaming import StreamingGenerator
from streaming_helpers import LATENT, K, encode_prompt, tiny_model, tiny_vae

SCHED = FlowMatchSchedule()  # 4 steps
WINDOW = {"local_attn_size": 5, "sink_size": 1, "rope_mode": "relative"}  # 1 sink + 4 recent frames


@pytest.fixture(scope="module")
def vae():
    return tiny_vae()


def _stream(model, vae, *, batch_size=1, seed=7, **kw) -> StreamingGenerator:
    if model.config.local_attn_size == -1:
        kw.setdefault("max_chunks", 8)  # global attention: a bounded stream
    return StreamingGenerator(
        model, vae, encode_prompt, schedule=SCHED, latent_size=LATENT, seed=seed, batch_size=batch_size, **kw
    )


def reference_chunks(model, prompts_per_chunk, *, batch_size=1, seed=7, drawn_chunks=8):
    """The sampler written out: the initial noise of `drawn_chunks` chunks drawn first (a stream of known
    length; None: each chunk's noise just before it, an endless stream), then per chunk a t = 0 context pass
    of every earlier clean chunk under the CURRENT chunk's prompt into a fresh cache (what a re-cache must
    reproduce) and the denoising steps, re-noising from the same CPU generator. Returns the clean chunks
    `(b c k h w)`."""
    g = torch.Generator().manual_seed(seed)
    sigmas = SCHED.sigmas.tolist()
    drawn = (
        None if drawn_chunks is None else torch.randn(batch_size, 4, K * drawn_chunks, *LATENT, generator=g)
    )
    clean: list[torch.Tensor] = []
    for i, prompt in enumerate(prompts_per_chunk):
        emb = encode_prompt([prompt] * batch_size)
        cache = model.new_kv_cache(batch_size)
        for j, x0 in enumerate(clean):
            context_pass(model, x0, emb, kv_cache=cache, frame_offset=j * K)
        x = (
            torch.randn(batch_size, 4, K, *LATENT, generator=g)
            if drawn is None
            else drawn[:, :, i * K : (i + 1) * K]
        )
        for s, sigma in enumerate(sigmas):
            x0 = denoise_step(
                model, x, sigma, emb, kv_cache=cache, frame_offset=i * K, num_train_timesteps=1000
            )
            if s + 1 < len(sigmas):
                x = add_noise(x0, torch.randn(x0.shape, generator=g), sigmas[s + 1])
        clean.append(x0)
    return clean, cache, emb


def _decode(vae, chunks):
    return vae.decode(torch.cat(chunks, 2))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_stream_equals_reference_loop(model, vae) -> None:
    stream = _stream(model, vae, batch_size=2)
    stream.set_prompt("a red fox")
    frames = [stream.next_chunk() for _ in range(3)]
    assert [f.shape for f in frames] == [(2, 1 + 4 * (K - 1), 3, 16, 16)] + [(2, 4 * K, 3, 16, 16)] * 2
    assert all(f.dtype == torch.float32 and f.device.type == "cpu" for f in frames)
    assert stream.chunk_index == 3 and stream.prompt == ["a red fox"] * 2
    assert set(stream.chunk_seconds) == {"model", "decode"} and all(
        v >= 0 for v in stream.chunk_seconds.values()
    )
    t = stream.timings  # summed since the reset: 3 chunks, the prompt's encoding, the first frame's time
    assert t.pixel_frames == 1 + 4 * (3 * K - 1) and t.text_s > 0 and t.denoise_s > 0 and t.decode_s > 0
    assert 0 < t.first_frame_s <= t.text_s + t.denoise_s + t.decode_s + 1.0
    clean, _, _ = reference_chunks(model, ["a red fox"] * 3, batch_size=2)
    ref = _decode(vae, clean)
    assert (torch.cat(frames, 1) - ref).abs().max() <= 1e-5
    # reset replays the same stream; another seed gives another video
    stream.reset()
    torch.testing.assert_close(stream.next_chunk(), frames[0], rtol=0, atol=0)
    stream.reset(seed=8)
    assert (stream.next_chunk() - frames[0]).abs().max() > 1e-3


def test_prompt_switch(model, vae) -> None:
    """Switch at chunk 2: chunks 0-1 bit-identical to a run without it; chunk 2 is the sampler's chunk with
    every earlier frame re-encoded under the new prompt; cross K/V and held K/V equal a fresh cache's."""
    plain = _stream(model, vae)
    plain.set_prompt("a red fox")
    no_switch = [plain.next_chunk() for _ in range(3)]

    stream = _stream(model, vae)
    stream.set_prompt("a red fox")
    out = [stream.next_chunk(), stream.next_chunk()]
    stream.set_prompt("a snowy owl")
    assert stream.prompt == ["a red fox"]  # applies at the next chunk boundary
    out.append(stream.next_chunk())
    assert stream.prompt == ["a snowy owl"]
    for a, b in zip(out[:2], no_switch[:2], strict=True):
        assert torch.equal(a, b)
    assert (out[2] - no_switch[2]).abs().max() > 1e-3

    clean, ref_cache, emb = reference_chunks(model, ["a red fox"] * 2 + ["a snowy owl"])
    ref = _decode(vae, clean)
    assert (torch.cat(out, 1) - ref).abs().max() <= 1e-5
    cache = stream.kv_cache
    # the cache the stream used for chunk 2 (its context pass not yet run): frames 0..2K-1 re-cached
    assert cache.held_frames() == ref_cache.held_frames() == list(range(2 * K))
    for layer in range(model.config.num_layers):
        for got, want in zip(cache.get_cross(layer), ref_cache.get_cross(layer), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        for frame in range(2 * K):
            for got, want in zip(cache.frame_kv(layer, frame), ref_cache.frame_kv(layer, frame), strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the switch embeddings are the new prompt's
    torch.testing.assert_close(stream._embeds, emb, rtol=0, atol=0)


def test_prompt_switch_with_window_and_constant_memory(vae) -> None:
    """Rolling window (+ sink, relative RoPE) with prompt switches: bounded latents, constant tensor bytes."""
    model = tiny_model(**WINDOW)
    stream = _stream(model, vae)  # max_chunks=None: endless
    stream.set_prompt("a red fox")

    def held_bytes() -> int:
        kv = sum(t.numel() * t.element_size() for t in stream.kv_cache.tensors())
        return kv + stream.held_latent_bytes() + stream.decoder.cache_bytes()

    sizes = {}
    for i in range(200):
        if i % 50 == 25:
            stream.set_prompt("a snowy owl" if i % 100 == 25 else "a red fox")
        frames = stream.next_chunk()
        assert torch.isfinite(frames).all()
        if i + 1 in (20, 200):
            sizes[i + 1] = held_bytes()
            # only the frames the cache holds keep their clean latents: 1 sink + the window
            assert len(stream._latents) == len(stream.kv_cache.held_frames()) <= WINDOW["local_attn_size"]
    assert stream.chunk_index == 200
    assert sizes[20] == sizes[200] > 0


@pytest.mark.slow
def test_thousand_chunks_constant_memory(vae) -> None:
    """1000 chunks: tensor bytes held identical at chunk 100 and 1000; process RSS within 32 MiB."""
    import resource

    model = tiny_model(**WINDOW)
    stream = _stream(model, vae)
    stream.set_prompt("a red fox")
    marks = {}
    for i in range(1000):
        stream.next_chunk()
        if i + 1 in (100, 1000):
            kv = sum(t.numel() * t.element_size() for t in stream.kv_cache.tensors())
            marks[i + 1] = (kv + stream.held_latent_bytes() + stream.decoder.cache_bytes(), _rss())
    assert marks[100][0] == marks[1000][0]
    assert marks[1000][1] - marks[100][1] < 32 * 2**20, marks
    del resource


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_stream_length_checks(vae) -> None:
    # absolute RoPE, global attention: the table bounds the stream
    small = {"config": {"rope_max_seq_len": 16}}
    model = tiny_model(**small)
    _stream(model, vae, max_chunks=8)  # 16 frames: positions 0..15 fit
    with pytest.raises(ValueError, match="max_chunks=9"):
        _stream(model, vae, max_chunks=9)
    with pytest.raises(ValueError, match="max_chunks=None"):
        _stream(model, vae, max_chunks=None)
    # absolute RoPE with a window still indexes absolute positions
    with pytest.raises(ValueError, match="rope_mode='absolute'"):
        _stream(tiny_model(local_attn_size=5, sink_size=1, **small), vae)
    # relative RoPE with a window never leaves positions 0..W-1: endless is fine
    _stream(tiny_model(local_attn_size=5, sink_size=1, rope_mode="relative", **small), vae)
    stream = _stream(model, vae, max_chunks=1)
    stream.set_prompt("a red fox")
    stream.next_chunk()
    with pytest.raises(ValueError, match="max_chunks=1"):
        stream.next_chunk()


def test_bad_input(model, vae) -> None:
    stream = _stream(model, vae, batch_size=2)
    with pytest.raises(ValueError, match="set_prompt"):
        stream.next_chunk()
    with pytest.raises(ValueError, match="''"):
        stream.set_prompt("")
    with pytest.raises(ValueError, match="'  '"):
        stream.set_prompt(["a red fox", "  "])
    with pytest.raises(ValueError, match="3 prompts for batch_size=2"):
        stream.set_prompt(["a", "b", "c"])
    bad = StreamingGenerator(
        model,
        vae,
        lambda p: encode_prompt(p)[:1],
        schedule=SCHED,
        latent_size=LATENT,
        batch_size=2,
        max_chunks=2,
    )
    with pytest.raises(ValueError, match="b=2"):
        bad.set_prompt("a red fox")
    with pytest.raises(ValueError, match=r"\(2, 0\)"):
        StreamingGenerator(model, vae, encode_prompt, schedule=SCHED, latent_size=(2, 0), max_chunks=2)
    with pytest.raises(ValueError, match="batch_size"):
        _stream(model, vae, batch_size=0)
    with pytest.raises(ValueError, match="max_chunks"):
        _stream(model, vae, max_chunks=0)


def test_from_module_streams_the_ema_generator_with_the_module_settings(vae) -> None:
    from rfvideo.models.tiny import tiny_text_encoder
    from rfvideo.modules import ODEInitModule

    sched = FlowMatchSchedule(denoising_steps=(1000, 500))
    module = ODEInitModule(
        generator=tiny_model(**WINDOW),
        vae=vae,
        text_encoder=tiny_text_encoder(),
        schedule=sched,
        num_latent_frames=2 * K,
        latent_size=(2, 4),
    )
    with torch.no_grad():  # an EMA that differs from the trained weights
        for p in module.generator_ema.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    stream = RFVideoPipeline.from_module(module).stream_generator(seed=3)
    assert stream.model is module.generator_ema and stream.schedule == sched and stream.latent_size == (2, 4)
    stream.set_prompt("a red fox")
    got = [stream.next_chunk(), stream.next_chunk()]
    assert got[0].shape == (1, 1 + 4 * (K - 1), 3, 16, 32)
    direct = StreamingGenerator(
        module.generator_ema, vae, module.encode_prompts, schedule=sched, latent_size=(2, 4), seed=3
    )
    direct.set_prompt("a red fox")
    for a in got:
        assert torch.equal(a, direct.next_chunk())
    raw = RFVideoPipeline.from_module(module, use_ema=False).stream_generator(seed=3)
    assert raw.model is module.generator
    raw.set_prompt("a red fox")
    assert (raw.next_chunk() - got[0]).abs().max() > 1e-4
