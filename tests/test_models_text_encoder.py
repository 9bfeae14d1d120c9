"""TextEncoder against diffusers' WanPipeline._get_t5_prompt_embeds on a tiny seeded UMT5.

Shapes: `b` prompts, `n` tokens, `d` text width.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import WanPipeline
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from helpers import randomize_
from rfvideo.models.text_encoder import TextEncoder, clean_prompt

N = 48  # tokens (ByT5 tokenizes bytes: short prompts fit)
PROMPTS = ["a cat riding a skateboard", "  waves &amp; rocks\n at   dusk ", "x"]


def tiny_umt5(seed: int = 0) -> UMT5EncoderModel:
    cfg = UMT5Config(
        vocab_size=384,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    torch.manual_seed(seed)
    return randomize_(UMT5EncoderModel(cfg), torch.Generator().manual_seed(seed)).eval()


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(tiny_umt5(), ByT5Tokenizer(), max_length=N)


def reference(enc: TextEncoder, prompts: list[str]) -> torch.Tensor:
    pipe = WanPipeline(
        tokenizer=enc.tokenizer, text_encoder=enc.text_encoder, transformer=None, vae=None, scheduler=None
    )
    with torch.no_grad():
        return pipe._get_t5_prompt_embeds(prompts, max_sequence_length=N, device=torch.device("cpu"))


def test_matches_wan_pipeline(encoder: TextEncoder) -> None:
    emb, mask = encoder.encode(PROMPTS)
    assert emb.shape == (3, N, 32) and mask.shape == (3, N) and mask.dtype == torch.bool
    torch.testing.assert_close(emb, reference(encoder, PROMPTS), rtol=0, atol=0)
    # zero exactly beyond each prompt's tokens (ByT5: bytes of the cleaned prompt + </s>)
    lengths = [len(clean_prompt(p).encode()) + 1 for p in PROMPTS]
    assert mask.sum(1).tolist() == lengths
    for row, n in zip(emb, lengths):
        assert row[n:].abs().max() == 0 and row[:n].abs().min() > 0
    # cleaning: same embedding for the same cleaned text
    emb2, _ = encoder.encode(["waves & rocks at dusk"])
    torch.testing.assert_close(emb2[0], emb[1], rtol=0, atol=0)


def test_truncation(encoder: TextEncoder) -> None:
    long = "a very long prompt " * 10
    emb, mask = encoder.encode([long])
    assert mask.all() and emb.shape == (1, N, 32)
    torch.testing.assert_close(emb, reference(encoder, [long]), rtol=0, atol=0)


def test_frozen(encoder: TextEncoder) -> None:
    encoder.train()
    assert not encoder.training and not encoder.text_encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    emb, _ = encoder.encode(PROMPTS[:1])
    assert not emb.requires_grad


def test_cache(encoder: TextEncoder) -> None:
    cached = TextEncoder(encoder.text_encoder, encoder.tokenizer, max_length=N, cache_size=2)
    calls = []
    hook = cached.text_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        a, ma = cached.encode([PROMPTS[0], PROMPTS[1], PROMPTS[0]])
        b, mb = cached.encode([PROMPTS[1]])
        assert calls == [2]  # duplicates and repeats served from the cache
        cached.encode([PROMPTS[2]])  # evicts PROMPTS[0] (least recently used)
        cached.encode([PROMPTS[0]])
        assert calls == [2, 1, 1]
    finally:
        hook.remove()
    ref, ref_mask = encoder.encode([PROMPTS[0], PROMPTS[1], PROMPTS[0]])
    torch.testing.assert_close(a, ref, rtol=0, atol=0)
    torch.testing.assert_close(b[0], ref[1], rtol=0, atol=0)
    assert torch.equal(ma, ref_mask)


@pytest.mark.parametrize(
    "prompts,match",
    [
        (["ok", ""], "prompt 1"),
        (["  \n\t"], "prompt 0"),
        (["ok", 3], "prompt 1 must be a string"),
        ("a bare string", "list of strings"),
        ([], "empty"),
    ],
)
def test_bad_prompts(encoder: TextEncoder, prompts, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encoder.encode(prompts)


def test_from_pretrained(tmp_path, encoder: TextEncoder) -> None:
    encoder.text_encoder.save_pretrained(tmp_path / "text_encoder")
    encoder.tokenizer.save_pretrained(tmp_path / "tokenizer")
    loaded = TextEncoder.from_pretrained(
        tmp_path,
        subfolder="text_encoder",
        tokenizer_subfolder="tokenizer",
        max_length=N,
        torch_dtype=torch.float32,
    )
    torch.testing.assert_close(loaded.encode(PROMPTS)[0], encoder.encode(PROMPTS)[0], rtol=0, atol=0)
    half = TextEncoder.from_pretrained(
        tmp_path, subfolder="text_encoder", tokenizer_subfolder="tokenizer", torch_dtype=torch.bfloat16
    )
    assert half.dtype == torch.bfloat16 and half.encode(["x"])[0].shape == (1, 512, 32)


def test_long_prompts_are_counted_and_warned_once(encoder: TextEncoder) -> None:
    fresh = TextEncoder(encoder.text_encoder, encoder.tokenizer, max_length=N)
    fits = "b" * (N - 1)  # ByT5: one token per byte + </s> -> exactly N tokens, not truncated
    over = "c" * N  # N + 1 tokens: truncated
    with pytest.warns(UserWarning, match=rf"1 prompt\(s\) longer than the text encoder's {N} tokens") as rec:
        fresh.encode([fits, over, "short"])
    assert len([w for w in rec if "longer than" in str(w.message)]) == 1
    assert fresh.num_truncated == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second batch with long prompts only counts
        fresh.encode([over + "d", over + "e", fits])
    assert fresh.num_truncated == 3


def test_from_pretrained_missing_folder_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"umT5 text encoder: no such folder: .*missing"):
        TextEncoder.from_pretrained(tmp_path / "missing", subfolder="text_encoder")
