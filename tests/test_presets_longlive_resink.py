"""LongLive's interactive config (`global_sink: false`): the `longlive-interactive` preset and
`CausalOptions.recache_sinks="resink"`, against a reference written from LongLive 1.0's documented rule.

The rule (its `_recache_after_switch` + its causal model's cache write, read at 7b567128): on a prompt switch
at frame `s`, the cache is zeroed and the last `min(W, s)` frames `s - W .. s - 1` are re-encoded at t = 0
under the new prompt, in one forward where every one of them attends to every other (the block mask it
builds is never read), at their absolute RoPE positions, and written from slot 0: the first `S` of them
become the sinks, the old sinks are gone. Later chunks see those sinks plus the last `W - S` frames, as
before the switch. A switch before the window fills (`s <= W`) re-encodes frames `0 .. s - 1` from slot 0,
which is what the `longlive` preset (`global_sink: true`) does there too.

The reference below holds one K/V per frame and recomputes every attention naively (softmax over exactly
the visible frames' keys, rotated at their absolute positions); rfvideo's sampler drives it through the
model's cached-call signature, so both runs draw the same noise.

Shapes: `b` batch, `c` latent channels, `f` frames, `h w` latent size, `T` tokens per frame, `H` heads,
`d` head dim, `n` text tokens, `D` model width.
"""

from __future__ import annotations

import math

import pytest
import torch

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalOptions, CausalWanTransformer, KVCache
from rfvideo.models.layer_kv import ChunkKV
from rfvideo.models.rope import apply_rope
from rfvideo.pipeline.presets import get_preset
from rfvideo.sampling.chunkwise import context_pass, sample_chunk
from rfvideo.streaming.generator import StreamingGenerator

K, C, LATENT = 3, 4, (4, 4)  # frames per chunk, latent channels, latent (h, w): 2x2 tokens per frame
W, S = 12, 3  # LongLive's window and sinks
PROMPTS = ("a", "b", "c")


def _model() -> CausalWanTransformer:
    model = CausalWanTransformer(**tiny_wan_config(), num_frames_per_chunk=K)
    return randomize_(model, torch.Generator().manual_seed(0)).eval()


def _texts() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {p: torch.randn(1, 5, 24, generator=g) for p in PROMPTS}  # (b n d)


def _naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over `(b l H d)` inputs, every key visible."""
    logits = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / math.sqrt(q.shape[-1])
    return torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v.double()).to(q.dtype)


class LongLiveInteractive:
    """LongLive 1.0's interactive inference with `global_sink: false`, frame by frame, as documented (module
    docstring). Callable like the model in "cached" mode (the `kv_cache` argument is ignored)."""

    def __init__(self, model: CausalWanTransformer) -> None:
        self.model = model
        self.kv: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # frame -> per layer (K rotated, V)
        self.sink_start = 0  # the sinks are frames [sink_start, sink_start + S)

    def visible(self, s: int, n: int) -> list[int]:
        """Frames a call of `n` frames at `s` attends to besides itself: the sinks, then the last W - S."""
        sinks = [j for j in range(self.sink_start, self.sink_start + S) if j in self.kv and j < s]
        rest = [j for j in sorted(self.kv) if j >= self.sink_start + S and s + n - (W - S) <= j < s]
        return sinks + rest

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, frames: list[int], context: list[int]
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Flow prediction of `x (b c f h w)` at positions `frames`, each frame attending to the stored K/V
        of `context` and to every frame of the call; returns it and per layer the call's (K rotated, V)."""
        m = self.model
        hh, ww = x.shape[3] // 2, x.shape[4] // 2
        tokens, tproj, temb, txt = m._embed(x, t, text)
        rope = m._rope(torch.tensor(frames), hh, ww)
        own = []
        for li, block in enumerate(m.blocks):
            q, k, v = block.self_attention_qkv(tokens, tproj, rope)
            k = apply_rope(k, *rope)
            keys = torch.cat([self.kv[j][li][0] for j in context] + [k], 1)
            values = torch.cat([self.kv[j][li][1] for j in context] + [v], 1)
            tokens = block.residual_cross_ffn(tokens, _naive_attention(q, keys, values), tproj, txt, None)[0]
            own.append((k, v))
        return m._head(tokens, temb, len(frames), hh, ww), own

    def store(self, frames: list[int], own: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        T = own[0][0].shape[1] // len(frames)
        for i, j in enumerate(frames):
            self.kv[j] = [(k[:, i * T : (i + 1) * T], v[:, i * T : (i + 1) * T]) for k, v in own]

    def __call__(self, x, t, text, *, attention_mode, kv_cache, frame_offset, write_cache=False):  # noqa: ANN001, ANN204
        assert attention_mode == "cached"
        frames = list(range(frame_offset, frame_offset + x.shape[2]))
        out, own = self.forward(x, t, text, frames, self.visible(frame_offset, len(frames)))
        if write_cache:
            self.store(frames, own)
        return out

    def switch(self, clean: dict[int, torch.Tensor], text: torch.Tensor, s: int) -> None:
        """The re-cache: zero the cache, re-encode the last min(W, s) frames (all seeing each other, at
        their positions) under `text`, write them from slot 0 (the first S become the sinks)."""
        frames = list(range(max(0, s - W), s))
        x = torch.cat([clean[j] for j in frames], 2)
        _, own = self.forward(x, torch.zeros(1, len(frames)), text, frames, [])
        self.kv, self.sink_start = {}, frames[0]
        self.store(frames, own)


def reference_run(model: CausalWanTransformer, prompts: list[str], seed: int) -> torch.Tensor:
    """The stream's noise rule (the whole initial noise first, re-noising from the same generator) and
    rfvideo's sampler over the reference; returns the clean latents `(b c f h w)`."""
    schedule, texts = get_preset("longlive-interactive").flow_schedule(), _texts()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, C, K * len(prompts), *LATENT, generator=g)
    ref, clean, out = LongLiveInteractive(model), {}, []
    for i, prompt in enumerate(prompts):
        s = i * K
        if i and prompt != prompts[i - 1]:
            ref.switch(clean, texts[prompt], s)
        x0 = sample_chunk(ref, noise[:, :, s : s + K], texts[prompt], schedule=schedule, generator=g,
                          kv_cache=None, frame_offset=s)  # fmt: skip
        context_pass(ref, x0, texts[prompt], kv_cache=None, frame_offset=s)
        clean.update({s + j: x0[:, :, j : j + 1] for j in range(K)})
        out.append(x0)
    return torch.cat(out, 2)


class _IdentityVae(torch.nn.Module):
    """A decoder slot returning the latents, so the stream's output is its clean latents."""

    def stream_decoder(self) -> _IdentityVae:
        return self

    def reset(self) -> None:
        pass

    def __call__(self, x0: torch.Tensor, frame_offset: int) -> torch.Tensor:  # type: ignore[override]
        return x0


def stream_run(preset: str, prompts: list[str], seed: int) -> tuple[torch.Tensor, StreamingGenerator]:
    model = _model()
    get_preset(preset).apply(model)
    texts = _texts()
    stream = StreamingGenerator(
        model, _IdentityVae(), lambda p: texts[p[0]], schedule=get_preset(preset).flow_schedule(),
        latent_size=LATENT, seed=seed, max_chunks=len(prompts),
    )  # fmt: skip
    out = []
    for i, prompt in enumerate(prompts):
        if i == 0 or prompt != prompts[i - 1]:
            stream.set_prompt(prompt)
        out.append(stream.next_chunk())
        if preset == "longlive-interactive":
            end = K * (i + 1)  # the latents a resink needs: the last W frames, no more
            assert sorted(stream._latents) == list(range(max(0, end - K - W), end - K))  # context deferred
    return torch.cat(out, 2), stream


def _prompts(*switches: int, chunks: int = 7) -> list[str]:
    """The prompt of each chunk: "a", then the next prompt from each switch frame on."""
    return [PROMPTS[sum(i * K >= s for s in switches)] for i in range(chunks)]


@torch.no_grad()
@pytest.mark.parametrize(
    "switches", [(15,), (18,), (15, 18)], ids=["past-window", "past-window-later", "twice-past-window"]
)
def test_stream_equals_longlive_interactive_rule(switches):
    """Past the window the preset's stream equals the reference chunk for chunk; the `longlive` preset
    (old sinks kept) equals it before the switch and differs after it."""
    prompts = _prompts(*switches)
    want = reference_run(_model(), prompts, seed=7)
    got, _ = stream_run("longlive-interactive", prompts, seed=7)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    kept, _ = stream_run("longlive", prompts, seed=7)
    first = switches[0]
    assert torch.equal(kept[:, :, :first], got[:, :, :first])
    assert not torch.allclose(kept[:, :, first:], got[:, :, first:], atol=1e-3, rtol=1e-3)


@torch.no_grad()
@pytest.mark.parametrize("switch", [6, 12], ids=["before-window-fills", "window-just-full"])
def test_switch_before_the_window_rolls_is_unaffected(switch):
    """With at most W frames written, resink re-encodes frames 0..s-1 from slot 0: what `longlive` does,
    bit for bit, and what the reference gives."""
    prompts = _prompts(switch)
    got, _ = stream_run("longlive-interactive", prompts, seed=5)
    kept, _ = stream_run("longlive", prompts, seed=5)
    assert torch.equal(got, kept)
    torch.testing.assert_close(got, reference_run(_model(), prompts, seed=5), atol=2e-5, rtol=2e-5)


B, T, H, D = 2, 4, 2, 3


def _same(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x


def _attend(cache: KVCache, offset: int, k: torch.Tensor, v: torch.Tensor, write: bool):
    """What one no-grad cached call attends over (layer 0, identity RoPE), through the model's path."""
    plan = cache.plan(offset, k.shape[1] // T, T, write=write, like=k)
    keys, values = ChunkKV(cache, 0, plan, rotate=_same, rope_ctx=None, rope_read=None).self_kv(
        k, v, (torch.ones(1, D), torch.zeros(1, D))
    )
    keys, values = keys.clone(), values.clone()
    if write:
        cache.end_write()
    return keys, values


@torch.no_grad()
def test_cache_restarts_at_the_last_window_and_reads_it_as_a_fresh_stream():
    """`prepare_recache` under "resink": the cache holds the last W frames with the first S as sinks, every
    later call attends to exactly those sinks plus its window (per-frame bookkeeping written here), and
    the other rules leave the cache as it was."""
    g = torch.Generator().manual_seed(4)
    frame = lambda: (torch.randn(B, T, H, D, generator=g), torch.randn(B, T, H, D, generator=g))  # noqa: E731
    for sinks in ("reencode", "keep", "resink"):
        opts = CausalOptions(num_frames_per_chunk=K, local_attn_size=W, sink_size=S,
                             recache_visibility="all_held", recache_sinks=sinks)  # fmt: skip
        cache = KVCache(1, batch_size=B, options=opts)
        for s in range(0, 15, K):
            kk, vv = zip(*(frame() for _ in range(K)), strict=True)
            _attend(cache, s, torch.cat(kk, 1), torch.cat(vv, 1), True)
        before = cache.held_frames()
        assert before == [0, 1, 2, *range(6, 15)]
        if sinks != "resink":
            assert cache.recache_frames() == cache.prepare_recache() == cache.held_frames() == before
            continue
        assert cache.recache_frames() == list(range(3, 15))
        with pytest.raises(ValueError, match=r"call prepare_recache\(\) before re-encoding"):
            cache.overwrite_held(0, *(torch.cat([frame()[i] for _ in before], 1) for i in (0, 1)))
        assert cache.held_frames() == before  # refused before anything changed
        held = cache.prepare_recache()
        assert held == cache.held_frames() == list(range(3, 15))
        assert cache.held_sink_frames() == S and not cache.has_rolled()
        # the re-cache writes every held frame; afterwards each call reads sinks 3..5 and its window
        stored = {j: frame() for j in held}
        cache.overwrite_held(0, *(torch.cat([stored[j][i] for j in held], 1) for i in (0, 1)))
        for s in range(15, 30, K):
            assert cache.visible_frames(s, K) == ([3, 4, 5], list(range(max(6, s + K - (W - S)), s)))
            for write in (False, True):
                own = [frame() for _ in range(K)]
                kk, vv = (torch.cat([f[i] for f in own], 1) for i in (0, 1))
                keys, values = _attend(cache, s, kk, vv, write)
                seen = [3, 4, 5, *range(s + K - (W - S), s)]
                torch.testing.assert_close(keys, torch.cat([stored[j][0] for j in seen] + [kk], 1))
                torch.testing.assert_close(values, torch.cat([stored[j][1] for j in seen] + [vv], 1))
            stored.update({s + i: own[i] for i in range(K)})
        # a second switch restarts at the new last window
        assert cache.prepare_recache() == list(range(30 - W, 30))


@torch.no_grad()
def test_model_recache_refuses_an_unprepared_resink_cache():
    """`model.recache` with the held frames' latents past the window would re-encode frames LongLive drops
    and keep sinks it replaces: refused until `prepare_recache` (what the stream calls) restarts the cache."""
    model = _model()
    get_preset("longlive-interactive").apply(model)
    texts, g = _texts(), torch.Generator().manual_seed(6)
    x = torch.randn(1, C, 15, *LATENT, generator=g)  # (b c f h w)
    cache = model.new_kv_cache(1)
    for s in range(0, 15, K):
        context_pass(model, x[:, :, s : s + K], texts["a"], kv_cache=cache, frame_offset=s)
    with pytest.raises(ValueError, match="call prepare_recache"):
        model.recache(x[:, :, cache.held_frames()], texts["b"], cache)
    held = cache.prepare_recache()
    model.recache(x[:, :, held], texts["b"], cache)
    assert held == cache.held_frames() == list(range(3, 15))
