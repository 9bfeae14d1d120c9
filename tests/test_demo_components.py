"""The demo's generator and text encoder: `PositionedCausalWan` against its parent and a naive embedding,
and the word-level tokenizer against hand-written ids.

Shapes: `b` batch, `c` channels, `f` latent frames, `h w` latent size, `n` text tokens, `d` text width.
"""

from __future__ import annotations

import pytest
import torch

from helpers import randomize_, tiny_wan_config
from rfvideo.demo.world.text_encoders import word_text_encoder, word_tokenizer
from rfvideo.models import CausalWanTransformer
from rfvideo.models.positioned_wan import PositionedCausalWan


def _models(seed: int = 0, **causal):
    cfg = tiny_wan_config(**causal)
    g = torch.Generator().manual_seed(seed)
    parent = randomize_(CausalWanTransformer(**cfg), g).eval()
    model = PositionedCausalWan(**cfg).eval()
    missing, unexpected = model.load_state_dict(parent.state_dict(), strict=False)
    assert sorted(missing) == ["pos_col", "pos_frame", "pos_row"] and not unexpected
    return parent, model


def _inputs(b: int = 2, f: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, f, 8, 6, generator=g)  # (b c f h w): a 4x3 token grid, not square on purpose
    text = torch.randn(b, 5, 24, generator=g)  # (b n d)
    t = torch.rand(b, f, generator=g) * 1000  # (b f)
    return x, text, t


def _randomize_tables(model: PositionedCausalWan, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for table in (model.pos_frame, model.pos_row, model.pos_col):
        table.copy_(torch.randn(table.shape, generator=g))


@torch.no_grad()
def test_positioned_wan_starts_as_its_parent_and_adds_frame_row_and_column_per_token():
    parent, model = _models()
    x, text, t = _inputs()
    # zero tables at init: the same function as CausalWanTransformer, bit for bit
    assert torch.equal(model(x, t, text), parent(x, t, text))
    _randomize_tables(model, 2)
    got = model._embed(x, t, text)[0]  # (b l D)
    base = parent._embed(x, t, text)[0]
    want = base.clone()
    hh, ww = 8 // 2, 6 // 2
    for k in range(3):  # naive: token (frame, row, col) gets frame[k] + row[i] + col[j]
        for i in range(hh):
            for j in range(ww):
                want[:, (k * hh + i) * ww + j] += model.pos_frame[k] + model.pos_row[i] + model.pos_col[j]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(model(x, t, text), parent(x, t, text))


@torch.no_grad()
def test_positioned_wan_cached_chunks_and_recache_equal_block_causal_and_reject_oversized_grids():
    """Each cached chunk gets its absolute frame's entry (frame_offset), as the one-pass forward does."""
    _, model = _models(num_frames_per_chunk=1, local_attn_size=2)  # a window: held frames are not 0..m-1
    _randomize_tables(model, 3)
    g = torch.Generator().manual_seed(5)
    clean, text, t = _inputs(f=3, seed=4)
    noisy = torch.randn(clean.shape, generator=g)
    cache = model.new_kv_cache(2)
    for s in range(3):
        got = model(noisy[:, :, s : s + 1], t[:, s : s + 1], text, attention_mode="cached", kv_cache=cache,
                    frame_offset=s)  # fmt: skip
        x_ref = torch.cat([clean[:, :, :s], noisy[:, :, s : s + 1]], dim=2)
        t_ref = torch.cat([torch.zeros(2, s), t[:, s : s + 1]], dim=1)
        want = model(x_ref, t_ref, text, attention_mode="block_causal")[:, :, s:]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        model(clean[:, :, s : s + 1], torch.zeros(2, 1), text, attention_mode="cached", kv_cache=cache,
              frame_offset=s, write_cache=True)  # fmt: skip
    # recache under a new prompt == writing the same clean frames with that prompt from the start
    other = torch.randn(text.shape, generator=g)
    held = cache.held_frames()
    assert held == [1, 2]
    model.recache(clean[:, :, held], other, cache)
    fresh = model.new_kv_cache(2)
    for s in range(3):
        model(clean[:, :, s : s + 1], torch.zeros(2, 1), other, attention_mode="cached", kv_cache=fresh,
              frame_offset=s, write_cache=True)  # fmt: skip
    nxt = torch.randn(2, 4, 1, 8, 6, generator=g)
    a = model(nxt, t[:, :1], other, attention_mode="cached", kv_cache=cache, frame_offset=3)
    b = model(nxt, t[:, :1], other, attention_mode="cached", kv_cache=fresh, frame_offset=3)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="token grid 66x1 exceeds"):
        model(torch.randn(1, 4, 1, 132, 2), torch.zeros(1), text[:1])


def test_word_tokenizer_gives_one_id_per_word_and_unk_outside_the_list():
    tok = word_tokenizer(["a", "red", "square", "moving", "left"])
    enc = tok(["A red square moving left", "a teal square, moving left"], padding="max_length", max_length=7)
    # [PAD] 0, [UNK] 1, then the words in order; case folded, punctuation split off (its own [UNK])
    assert enc["input_ids"] == [[2, 3, 4, 5, 6, 0, 0], [2, 1, 4, 1, 5, 6, 0]]
    assert enc["attention_mask"][0] == [1, 1, 1, 1, 1, 0, 0]


def test_word_text_encoder_is_zero_padded_and_without_context_layers_differs_only_at_the_changed_word():
    enc = word_text_encoder(d_model=16, max_length=8, seed=0)
    emb, mask = enc.encode(["a red square moving left", "a blue square moving left"])
    assert emb.shape == (2, 8, 16) and mask.sum(1).tolist() == [5, 5]
    assert (emb[~mask] == 0).all() and not torch.allclose(emb[0], emb[1])
    flat, _ = word_text_encoder(d_model=16, max_length=8, seed=0, num_layers=0).encode(
        ["a red square moving left", "a blue square moving left"]
    )
    changed = (flat[0] - flat[1]).abs().amax(-1) > 0  # (n,) tokens whose state differs
    assert changed.tolist() == [False, True, False, False, False, False, False, False]
    again, _ = word_text_encoder(d_model=16, max_length=8, seed=0).encode(["a red square moving left"])
    assert torch.equal(again[0], emb[0])  # seeded: the same encoder every build


def test_tiny_causal_wan_loads_the_saved_stage1_weights_or_says_it_cannot(tmp_path):
    from rfvideo.demo.stages import save_generator
    from rfvideo.models.tiny import tiny_causal_wan

    kw = {"num_layers": 1, "in_channels": 3, "absolute_positions": True}
    trained = tiny_causal_wan(seed=5, init_scale=0.1, **kw)
    with torch.no_grad():
        trained.pos_row.add_(torch.randn(trained.pos_row.shape, generator=torch.Generator().manual_seed(2)))
    path = save_generator(trained, tmp_path / "stage1" / "generator.safetensors")
    loaded = tiny_causal_wan(seed=0, weights=str(path), **kw)  # another init, then the saved weights
    want, got = trained.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    missing = str(tmp_path / "none.safetensors")
    with pytest.raises(ValueError, match="none.safetensors"):
        tiny_causal_wan(weights=missing, **kw)
    with pytest.warns(UserWarning, match="make demo"):
        fallback = tiny_causal_wan(seed=0, weights=missing, require_weights=False, **kw)
    assert torch.equal(fallback.pos_row, tiny_causal_wan(seed=0, **kw).pos_row)
