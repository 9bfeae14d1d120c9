"""CausalWanTransformer against diffusers' WanTransformer3DModel and its own causal invariants.

Shapes: `b` batch, `c` channels, `f` latent frames, `h w` latent size, `n` text tokens, `d` text width.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalOptions, CausalWanTransformer
from rfvideo.models.attention import frame_visibility, resolve_backend
from rfvideo.models.causal_wan import WanConditionEmbedder
from rfvideo.models.rope import apply_rope

TOKENS_PER_FRAME = 16  # 8x8 latents, patch 2x2


def _pair(seed: int = 0, **causal):
    cfg = tiny_wan_config()
    g = torch.Generator().manual_seed(seed)
    ref = randomize_(WanTransformer3DModel(**cfg), g).eval()
    model = CausalWanTransformer(**cfg, **causal).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    return ref, model


def _inputs(b: int = 2, f: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, f, 8, 8, generator=g)  # (b c f h w)
    text = torch.randn(b, 5, 24, generator=g)  # (b n d)
    t_frames = torch.rand(b, f, generator=g) * 1000  # (b f)
    return x, text, t_frames


@torch.no_grad()
def test_full_mode_equals_diffusers_scalar_and_per_frame_timestep():
    ref, model = _pair()
    x, text, tf = _inputs()
    t = tf[:, 0]
    expected = ref(x, t, text, return_dict=False)[0]
    torch.testing.assert_close(model(x, t, text), expected, atol=1e-5, rtol=1e-5)
    # diffusers takes per-token timesteps: repeat each frame's t over its tokens
    expected = ref(x, tf.repeat_interleave(TOKENS_PER_FRAME, dim=1), text, return_dict=False)[0]
    out = model(x, tf, text, attention_mode="full")
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert model(x, tf, text, return_dict=True).sample.shape == x.shape


def test_strict_load_both_ways_and_config():
    cfg = tiny_wan_config()
    model = randomize_(CausalWanTransformer(**cfg, num_frames_per_chunk=2), torch.Generator().manual_seed(3))
    ref = WanTransformer3DModel(**cfg)
    ref.load_state_dict(model.state_dict(), strict=True)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert model.config.num_frames_per_chunk == 2 and model.num_frames_per_chunk == 2
    for key in cfg:
        assert key in model.config


def test_state_dict_keys_equal_diffusers_and_condition_embedder_is_a_named_module():
    cfg = tiny_wan_config()
    ours, ref = CausalWanTransformer(**cfg), WanTransformer3DModel(**cfg)
    assert set(ours.state_dict()) == set(ref.state_dict())
    assert isinstance(ours.condition_embedder, WanConditionEmbedder)
    assert {n for n, _ in ours.condition_embedder.named_children()} == {
        n for n, _ in ref.condition_embedder.named_children()
    }


@torch.no_grad()
def test_condition_embedder_equals_diffusers_per_frame():
    """Per-frame timesteps `(b g)`: each frame's embedding equals diffusers' embedder on that frame's t (float
    tolerance: one batched matmul over b * g rows rounds differently from b rows)."""
    cfg = tiny_wan_config()
    ref = randomize_(WanTransformer3DModel(**cfg), torch.Generator().manual_seed(7)).eval()
    model = CausalWanTransformer(**cfg).eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    _, text, tf = _inputs(b=2, f=3)
    temb, tproj, txt = model.condition_embedder(tf, text)
    assert temb.shape[:2] == tproj.shape[:2] == (2, 3) and tproj.shape[2] == 6
    for i in range(3):
        want_temb, want_proj, want_text, _ = ref.condition_embedder(tf[:, i], text, None)
        torch.testing.assert_close(temb[:, i], want_temb, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(tproj[:, i].flatten(1), want_proj, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(txt, want_text, atol=1e-6, rtol=1e-5)


def test_resolve_backend():
    assert resolve_backend("auto") == "sdpa" and resolve_backend("flex") == "flex"
    with pytest.raises(ValueError, match="attention_backend must be one of .* got 'magic'"):
        resolve_backend("magic")


@torch.no_grad()
def test_from_pretrained_of_saved_diffusers_checkpoint(tmp_path):
    ref, _ = _pair(seed=4)
    ref.save_pretrained(tmp_path / "transformer")
    model = CausalWanTransformer.from_pretrained(
        tmp_path, subfolder="transformer", torch_dtype=torch.float32, num_frames_per_chunk=2, sink_size=1
    ).eval()
    assert model.config.num_frames_per_chunk == 2 and model.config.sink_size == 1
    x, text, tf = _inputs(f=4)
    expected = ref(x, tf.repeat_interleave(TOKENS_PER_FRAME, dim=1), text, return_dict=False)[0]
    torch.testing.assert_close(model(x, tf, text), expected, atol=1e-5, rtol=1e-5)
    # and our own save/load round trip keeps the causal options
    model.save_pretrained(tmp_path / "ours")
    again = CausalWanTransformer.from_pretrained(tmp_path / "ours")
    assert again.config.sink_size == 1
    bf16 = CausalWanTransformer.from_pretrained(tmp_path, subfolder="transformer", torch_dtype=torch.bfloat16)
    assert bf16.proj_out.weight.dtype == torch.bfloat16
    assert bf16.blocks[0].scale_shift_table.dtype == torch.float32  # kept in fp32 like diffusers


@torch.no_grad()
def test_block_causal_equals_masked_reference_and_prefix_invariance():
    _, model = _pair()
    x, text, tf = _inputs(f=6)
    out = model(x, tf, text, attention_mode="block_causal")
    # the first chunk alone (full attention) equals the first chunk of the block-causal pass
    first = model(x[:, :, :3], tf[:, :3], text, attention_mode="full")
    torch.testing.assert_close(out[:, :, :3], first, atol=1e-5, rtol=1e-5)
    # changing chunk 1 leaves chunk 0 bit-identical, and does change chunk 1
    x2, tf2 = x.clone(), tf.clone()
    x2[:, :, 3:] = torch.randn(x2[:, :, 3:].shape, generator=torch.Generator().manual_seed(9))
    tf2[:, 3:] = 17.0
    out2 = model(x2, tf2, text, attention_mode="block_causal")
    assert torch.equal(out[:, :, :3], out2[:, :, :3])
    assert not torch.allclose(out[:, :, 3:], out2[:, :, 3:])


def test_frame_visibility_rules():
    m = frame_visibility(9, CausalOptions(num_frames_per_chunk=3, local_attn_size=-1, sink_size=0))
    assert m[0, 2] and not m[0, 3] and m[8, 0] and m[3, 5]
    # window 6 incl. 1 sink: chunk [6, 9) sees frame 0 and frames [4, 9)
    m = frame_visibility(9, CausalOptions(num_frames_per_chunk=3, local_attn_size=6, sink_size=1))
    assert m[6].tolist() == [True, False, False, False, True, True, True, True, True]


@torch.no_grad()
def test_cached_chunkwise_denoising_equals_block_causal():
    """Denoise chunk k against a cache of clean earlier chunks (written by t = 0 context passes)
    == one block-causal forward over [clean prefix at t = 0, noisy chunk k at t]."""
    _, model = _pair()
    g = torch.Generator().manual_seed(5)
    clean = torch.randn(2, 4, 9, 8, 8, generator=g)
    noisy = torch.randn(2, 4, 9, 8, 8, generator=g)
    text = torch.randn(2, 5, 24, generator=g)
    t_noisy = torch.rand(2, 3, generator=g) * 1000
    cache = model.new_kv_cache(2)
    for k in range(3):
        s = 3 * k
        # two denoising steps (no write), then the t = 0 context pass writes the clean chunk
        for step in range(2):
            t = t_noisy + 100 * step
            got = model(
                noisy[:, :, s : s + 3], t, text, attention_mode="cached", kv_cache=cache, frame_offset=s
            )
            x_ref = torch.cat([clean[:, :, :s], noisy[:, :, s : s + 3]], dim=2)
            t_ref = torch.cat([torch.zeros(2, s), t], dim=1)
            want = model(x_ref, t_ref, text, attention_mode="block_causal")[:, :, s:]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        zeros = torch.zeros(2, 3)
        model(clean[:, :, s : s + 3], zeros, text, attention_mode="cached", kv_cache=cache, frame_offset=s,
              write_cache=True)  # fmt: skip
    assert cache.end_frame == 9 and cache.num_cached_frames() == 9


@torch.no_grad()
def test_overwrite_last_chunk_and_write_does_not_change_output():
    _, model = _pair()
    x, text, tf = _inputs(f=6)
    cache = model.new_kv_cache(2)
    a = model(
        x[:, :, :3],
        tf[:, :3],
        text,
        attention_mode="cached",
        kv_cache=cache,
        frame_offset=0,
        write_cache=True,
    )
    # overwrite the same slot with different content, then with the right content again
    model(
        x[:, :, 3:],
        tf[:, 3:],
        text,
        attention_mode="cached",
        kv_cache=cache,
        frame_offset=0,
        write_cache=True,
    )
    model(
        x[:, :, :3],
        tf[:, :3],
        text,
        attention_mode="cached",
        kv_cache=cache,
        frame_offset=0,
        write_cache=True,
    )
    b = model(x[:, :, 3:], tf[:, 3:], text, attention_mode="cached", kv_cache=cache, frame_offset=3)
    want = model(x, tf, text, attention_mode="block_causal")
    torch.testing.assert_close(a, want[:, :, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, want[:, :, 3:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="frame_offset=6"):
        model(
            x[:, :, 3:],
            tf[:, 3:],
            text,
            attention_mode="cached",
            kv_cache=cache,
            frame_offset=6,
            write_cache=True,
        )


def _rollout(model, x, tf, text, cache):
    outs = []
    for s in range(0, x.shape[2], 3):
        xs, ts = x[:, :, s : s + 3], tf[:, s : s + 3]
        outs.append(model(xs, ts, text, attention_mode="cached", kv_cache=cache, frame_offset=s))
        model(xs, ts, text, attention_mode="cached", kv_cache=cache, frame_offset=s, write_cache=True)
    return torch.cat(outs, dim=2)


@torch.no_grad()
@pytest.mark.parametrize("sink_size", [0, 3])
def test_rolling_window_cached_equals_sliding_window_mask(sink_size):
    _, model = _pair(local_attn_size=6 + sink_size, sink_size=sink_size)
    x, text, tf = _inputs(b=1, f=15)
    cache = model.new_kv_cache(1)
    got = _rollout(model, x, tf, text, cache)
    want = model(x, tf, text, attention_mode="block_causal")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the cache holds sinks + the window only (evicted frames are gone)
    assert cache.held_frames() == list(range(sink_size)) + [9, 10, 11, 12, 13, 14]
    # and the window really changes the result vs global attention
    _, glob = _pair()
    assert not torch.allclose(glob(x, tf, text, attention_mode="block_causal")[:, :, 9:], want[:, :, 9:])


@torch.no_grad()
def test_relative_rope_equals_absolute_while_nothing_is_evicted():
    _, absolute = _pair(rope_mode="absolute")
    _, relative = _pair(rope_mode="relative")
    x, text, tf = _inputs(b=1, f=9)
    a = _rollout(absolute, x, tf, text, absolute.new_kv_cache(1))
    r = _rollout(relative, x, tf, text, relative.new_kv_cache(1))
    torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_relative_rope_runs_past_the_table_absolute_raises():
    cfg = tiny_wan_config(rope_max_seq_len=8)
    g = torch.Generator().manual_seed(0)
    rel = randomize_(CausalWanTransformer(**cfg, local_attn_size=6, rope_mode="relative"), g).eval()
    ab = CausalWanTransformer(**cfg, local_attn_size=6, rope_mode="absolute").eval()
    x, text, tf = _inputs(b=1, f=12)
    out = _rollout(rel, x, tf, text, rel.new_kv_cache(1))
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="rope_max_seq_len=8"):
        _rollout(ab, x, tf, text, ab.new_kv_cache(1))


def test_cache_tensors_detached_under_grad():
    _, model = _pair()
    model.train()
    x, text, tf = _inputs(b=1, f=6)
    cache = model.new_kv_cache(1)
    out = model(
        x[:, :, :3],
        tf[:, :3],
        text,
        attention_mode="cached",
        kv_cache=cache,
        frame_offset=0,
        write_cache=True,
    )
    out2 = model(x[:, :, 3:], tf[:, 3:], text, attention_mode="cached", kv_cache=cache, frame_offset=3)
    assert out.requires_grad and out2.requires_grad
    assert cache.tensors() and all(not t.requires_grad for t in cache.tensors())
    # gradient reaches the cross-attention K projection although its K/V are cached
    out2.square().mean().backward()
    assert model.blocks[0].attn2.to_k.weight.grad is not None
    assert model.blocks[0].attn2.to_k.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["block_causal", "cached"])
def test_gradient_checkpointing_same_grads(mode):
    x, text, tf = _inputs(b=1, f=6)
    grads = []
    for ckpt in (False, True):
        _, model = _pair()
        model.train()
        if ckpt:
            model.enable_gradient_checkpointing()
        if mode == "cached":
            cache = model.new_kv_cache(1)
            with torch.no_grad():
                model(x[:, :, :3], tf[:, :3], text, attention_mode="cached", kv_cache=cache, frame_offset=0,
                      write_cache=True)  # fmt: skip
            out = model(x[:, :, 3:], tf[:, 3:], text, attention_mode="cached", kv_cache=cache, frame_offset=3,
                        write_cache=True)  # fmt: skip
            assert cache.end_frame == 6
        else:
            out = model(x, tf, text, attention_mode="block_causal")
        out.square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5, msg=n)


@torch.no_grad()
def test_bad_inputs_raise_value_errors():
    _, model = _pair()
    x, text, tf = _inputs(f=6)
    with pytest.raises(ValueError, match="5 latent channels"):
        model(torch.randn(2, 5, 6, 8, 8), tf, text)
    with pytest.raises(ValueError, match=r"f \(4\)"):
        model(x[:, :, :4], tf[:, :4], text, attention_mode="block_causal")
    with pytest.raises(ValueError, match="timestep 1"):
        model(x, tf[:1], text)
    with pytest.raises(ValueError, match="encoder_hidden_states 1"):
        model(x, tf, text[:1])
    with pytest.raises(ValueError, match="'sideways'"):
        model(x, tf, text, attention_mode="sideways")
    with pytest.raises(ValueError, match="needs kv_cache"):
        model(x[:, :, :3], tf[:, :3], text, attention_mode="cached", frame_offset=0)
    with pytest.raises(ValueError, match="batch_size=1"):
        model(
            x[:, :, :3],
            tf[:, :3],
            text,
            attention_mode="cached",
            kv_cache=model.new_kv_cache(1),
            frame_offset=0,
        )
    with pytest.raises(ValueError, match="I2V"):
        CausalWanTransformer(**tiny_wan_config(image_dim=8, added_kv_proj_dim=8))
    with pytest.raises(ValueError, match="local_attn_size"):
        CausalWanTransformer(**tiny_wan_config(), local_attn_size=4, sink_size=2)


@torch.no_grad()
def test_relative_rope_after_eviction_places_sinks_then_window_then_chunk():
    """With one layer, cached K/V depend only on each chunk's own input, so a relative-RoPE rollout with a
    rolling window must equal a global block-causal forward over the compacted [sink, window, chunk]."""
    cfg = tiny_wan_config(num_layers=1)
    g = torch.Generator().manual_seed(6)
    rel = randomize_(
        CausalWanTransformer(**cfg, local_attn_size=9, sink_size=3, rope_mode="relative"), g
    ).eval()
    glob = CausalWanTransformer(**cfg).eval()
    glob.load_state_dict(rel.state_dict())
    x, text, tf = _inputs(b=1, f=15)
    got = _rollout(rel, x, tf, text, rel.new_kv_cache(1))
    keep = [0, 1, 2, 9, 10, 11, 12, 13, 14]  # sinks, the previous chunk, the current chunk
    want = glob(x[:, :, keep], tf[:, keep], text, attention_mode="block_causal")
    torch.testing.assert_close(got[:, :, 12:], want[:, :, 6:], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_ema_sink_changes_outputs_only_after_eviction():
    x, text, tf = _inputs(b=1, f=15)
    outs = {}
    for eviction in ("drop", "ema"):
        _, model = _pair(local_attn_size=9, sink_size=3, rope_mode="relative", sink_eviction=eviction,
                         sink_ema_decay=0.5)  # fmt: skip
        outs[eviction] = _rollout(model, x, tf, text, model.new_kv_cache(1))
    # the first eviction happens when chunk [9, 12) is written, so chunks < 4 agree exactly
    assert torch.equal(outs["drop"][:, :, :12], outs["ema"][:, :, :12])
    assert not torch.allclose(outs["drop"][:, :, 12:], outs["ema"][:, :, 12:])


@torch.no_grad()
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_backend_equals_sdpa_block_causal():
    _, model = _pair(local_attn_size=9, sink_size=3)
    _, flex = _pair(local_attn_size=9, sink_size=3, attention_backend="flex")
    x, text, tf = _inputs(b=1, f=12)
    want = model(x, tf, text, attention_mode="block_causal")
    torch.testing.assert_close(flex(x, tf, text, attention_mode="block_causal"), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ causal options, return_dict, cache API
def test_causal_options_in_config_cache_and_loader(tmp_path):
    from rfvideo.models import CausalOptions
    from rfvideo.modules.components import load_causal_wan

    opts = CausalOptions(num_frames_per_chunk=2, local_attn_size=6, sink_size=1, sink_eviction="ema",
                         sink_ema_decay=0.5, rope_mode="relative", attention_backend="sdpa")  # fmt: skip
    model = CausalWanTransformer.from_options(opts, **tiny_wan_config())
    assert model.causal_options == opts and model.new_kv_cache(1).options == opts
    for key, value in opts.to_config().items():  # flat keys: config.json and old configs keep working
        assert model.config[key] == value
    ref, _ = _pair(seed=2)
    ref.save_pretrained(tmp_path / "transformer")
    loaded = load_causal_wan(str(tmp_path), **opts.to_config())
    assert loaded.causal_options == opts
    with pytest.raises(ValueError, match="sink_eviction must be one of"):
        load_causal_wan(str(tmp_path), sink_eviction="keep")
    with pytest.raises(ValueError, match="attention_backend must be one of"):
        CausalOptions(attention_backend="magic")
    with pytest.raises(ValueError, match="sink_ema_decay must be in"):
        CausalWanTransformer(**tiny_wan_config(), sink_ema_decay=1.5)


@torch.no_grad()
def test_return_dict_follows_diffusers():
    _, model = _pair()
    x, text, tf = _inputs()
    out = model(x, tf, text)
    tup = model(x, tf, text, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 1 and torch.equal(tup[0], out)
    assert torch.equal(model(x, tf, text, return_dict=True).sample, out)
    with pytest.raises(ValueError, match="attention_kwargs"):
        model(x, tf, text, attention_kwargs={"scale": 0.5})


@torch.no_grad()
def test_absolute_rope_overflow_raises_before_the_forward_and_leaves_the_cache():
    cfg = tiny_wan_config(rope_max_seq_len=8)
    model = randomize_(CausalWanTransformer(**cfg), torch.Generator().manual_seed(0)).eval()
    x, text, tf = _inputs(b=1, f=9)
    cache = model.new_kv_cache(1)
    _rollout(model, x[:, :, :6], tf[:, :6], text, cache)
    calls = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, a: calls.append(1))
    with pytest.raises(ValueError, match=r"latent frame 8 is past the RoPE table \(rope_max_seq_len=8\)"):
        model(x[:, :, 6:], tf[:, 6:], text, attention_mode="cached", kv_cache=cache, frame_offset=6,
              write_cache=True)  # fmt: skip
    handle.remove()
    assert not calls and cache.end_frame == 6 and cache.held_frames() == list(range(6))


def _held_kv(cache, layer):
    ks, vs = zip(*(cache.frame_kv(layer, j) for j in cache.held_frames()), strict=True)
    return torch.cat(ks, 1), torch.cat(vs, 1)


@torch.no_grad()
@pytest.mark.parametrize("causal", [{}, {"rope_mode": "relative"}])
def test_recache_equals_fresh_context_passes_under_the_new_prompt(causal):
    """Global attention: every held frame saw all earlier chunks, so LongLive's re-cache (one masked t = 0
    forward) must equal writing the same clean chunks again, one context pass each, under the new text."""
    _, model = _pair(**causal)
    g = torch.Generator().manual_seed(11)
    clean = torch.randn(1, 4, 9, 8, 8, generator=g)
    old_text, new_text = torch.randn(1, 5, 24, generator=g), torch.randn(1, 5, 24, generator=g)
    zeros = torch.zeros(1, 3)
    cache, fresh = model.new_kv_cache(1), model.new_kv_cache(1)
    for s in (0, 3, 6):
        chunk = clean[:, :, s : s + 3]
        model(
            chunk, zeros, old_text, attention_mode="cached", kv_cache=cache, frame_offset=s, write_cache=True
        )
        model(chunk, zeros, new_text, attention_mode="cached", kv_cache=fresh, frame_offset=s,
              write_cache=True)  # fmt: skip
    before = _held_kv(cache, 1)
    model.recache(clean, new_text, cache)
    for layer in range(2):
        for got, want in zip(_held_kv(cache, layer), _held_kv(fresh, layer), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        for got, want in zip(cache.get_cross(layer), fresh.get_cross(layer), strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(before[0], _held_kv(cache, 1)[0])  # the prompt did change layer-1 keys
    with pytest.raises(ValueError, match=r"clean latents \(b c 9 h w\)"):
        model.recache(clean[:, :, :6], new_text, cache)


@torch.no_grad()
def test_recache_with_window_and_sinks_equals_a_hand_computed_masked_pass():
    """Rolling window + sinks: held frames [0, 9..14]; each is re-encoded seeing the held frames it saw
    when written (sink 0, its window restricted to what is held, its own chunk), at its absolute RoPE
    position. By hand: run the blocks on those frames with that mask, capturing their K/V."""
    _, model = _pair(local_attn_size=7, sink_size=1)
    x, text, tf = _inputs(b=1, f=15)
    cache = model.new_kv_cache(1)
    _rollout(model, x, tf, text, cache)
    held = cache.held_frames()
    assert held == [0, 9, 10, 11, 12, 13, 14]
    new_text = torch.randn(1, 5, 24, generator=torch.Generator().manual_seed(3))
    clean = torch.randn(1, 4, len(held), 8, 8, generator=torch.Generator().manual_seed(4))
    model.recache(clean, new_text, cache)

    T = TOKENS_PER_FRAME
    # frame -> frames it may see: frame 0 itself (chunk 0 = [0, 3), only 0 is held); chunk [9, 12)
    # sees sink 0 and frames >= 12 - 6 = 6 that are held, i.e. 9..11; chunk [12, 15) sees 0, 9..14
    sees = {0: [0], 9: [0, 9, 10, 11], 12: [0, 9, 10, 11, 12, 13, 14]}
    chunk_of = {0: 0, 9: 9, 10: 9, 11: 9, 12: 12, 13: 12, 14: 12}
    fm = torch.tensor([[j in sees[chunk_of[i]] for j in held] for i in held])
    mask = fm.repeat_interleave(T, 0).repeat_interleave(T, 1)
    hx, tproj, _, htext = model._embed(clean, torch.zeros(1, len(held)), new_text)
    rope = model._rope(torch.tensor(held), 4, 4)
    for layer, block in enumerate(model.blocks):
        q, k, v = block.self_attention_qkv(hx, tproj, rope)
        k = apply_rope(k, *rope)
        got_k, got_v = _held_kv(cache, layer)
        torch.testing.assert_close(got_k, k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_v, v, atol=1e-5, rtol=1e-5)
        y = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
        ).transpose(1, 2)
        hx, ck, cv = block.residual_cross_ffn(hx, y, tproj, htext, None)
        torch.testing.assert_close(cache.get_cross(layer)[0], ck, atol=1e-6, rtol=1e-6)


def test_grad_through_an_exit_step_survives_later_writes():
    """Autograd safety: a grad-enabled cached forward of chunk 1 over the buffer holding chunk 0, then
    (no grad) denoising reads and context passes of later chunks that write into the same buffer slots it
    read; the backward equals the same forward's on a cache left alone."""
    _, model = _pair()
    model.train()
    x, text, tf = _inputs(b=1, f=12)
    weight = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    cache = model.new_kv_cache(1)
    zeros = torch.zeros(1, 3)
    with torch.no_grad():
        model(
            x[:, :, :3],
            zeros,
            text,
            attention_mode="cached",
            kv_cache=cache,
            frame_offset=0,
            write_cache=True,
        )
    out = model(x[:, :, 3:6], tf[:, 3:6], text, attention_mode="cached", kv_cache=cache, frame_offset=3)
    with torch.no_grad():
        for s in (3, 6, 9):
            model(x[:, :, s : s + 3], tf[:, s : s + 3], text, attention_mode="cached", kv_cache=cache,
                  frame_offset=s)  # fmt: skip
            model(x[:, :, s : s + 3], zeros, text, attention_mode="cached", kv_cache=cache, frame_offset=s,
                  write_cache=True)  # fmt: skip
    (out * weight).sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # reference: the same forward on a cache that nothing writes into afterwards
    fresh = model.new_kv_cache(1)
    with torch.no_grad():
        model(
            x[:, :, :3],
            zeros,
            text,
            attention_mode="cached",
            kv_cache=fresh,
            frame_offset=0,
            write_cache=True,
        )
    ref = model(x[:, :, 3:6], tf[:, 3:6], text, attention_mode="cached", kv_cache=fresh, frame_offset=3)
    torch.testing.assert_close(out.detach(), ref.detach(), atol=0, rtol=0)
    (ref * weight).sum().backward()
    assert len(ours) > 10
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(ours[n], p.grad, atol=1e-5, rtol=1e-4, msg=n)
