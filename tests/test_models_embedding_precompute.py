"""Prompt-embedding store: round trip against direct encoding, resume, errors.

Shapes: `b` prompts, `n` tokens, `d` text width.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from helpers import randomize_
from rfvideo.models.embedding_precompute import PromptEmbeddingStore, precompute_prompt_embeddings
from rfvideo.models.text_encoder import TextEncoder

N = 40
PROMPTS = [f"prompt number {i} " + "x" * (i % 7) for i in range(7)] + ["a dog", "a  dog", "waves &amp; rocks"]


class CountingEncoder(TextEncoder):
    """Records the prompts it encodes; optionally fails after a number of calls (simulated crash)."""

    def __init__(self, *args, fail_after: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[str] = []
        self.fail_after = fail_after

    def encode(self, prompts):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.seen.extend(prompts)
        return super().encode(prompts)


def make_encoder(**kwargs) -> CountingEncoder:
    cfg = UMT5Config(
        vocab_size=384,
        d_model=24,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_heads=3,
        relative_attention_num_buckets=8,
    )
    model = randomize_(UMT5EncoderModel(cfg), torch.Generator().manual_seed(0)).eval()
    return CountingEncoder(model, ByT5Tokenizer(), max_length=N, **kwargs)


def test_round_trip_equals_direct_encode(tmp_path) -> None:
    enc = make_encoder()
    precompute_prompt_embeddings(enc, PROMPTS, tmp_path, shard_size=4, batch_size=3, progress=False)
    # "a dog" / "a  dog" clean to the same text: 9 unique prompts in 3 shards, no temporary files left
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "index.json",
        "shard_00000.safetensors",
        "shard_00001.safetensors",
        "shard_00002.safetensors",
    ]
    store = PromptEmbeddingStore(tmp_path)
    assert len(store) == 9 and "a  dog" in store and "a cat" not in store
    query = [PROMPTS[5], "waves & rocks", PROMPTS[0], "a dog", PROMPTS[5]]
    emb, mask = store.get(query)
    ref, ref_mask = enc.encode(query)
    assert emb.shape == (5, N, 24) and mask.dtype == torch.bool
    torch.testing.assert_close(emb, ref, rtol=0, atol=0)
    assert torch.equal(mask, ref_mask)


def test_bf16_storage(tmp_path) -> None:
    enc = make_encoder()
    precompute_prompt_embeddings(enc, PROMPTS[:3], tmp_path, dtype=torch.bfloat16, progress=True)
    store = PromptEmbeddingStore(tmp_path)
    emb, _ = store.get(PROMPTS[:3])
    assert emb.dtype == torch.bfloat16 and store.dtype == torch.bfloat16
    torch.testing.assert_close(emb, enc.encode(PROMPTS[:3])[0].bfloat16(), rtol=0, atol=0)


def test_resume_skips_finished_shards(tmp_path) -> None:
    crashing = make_encoder(fail_after=4)  # finishes shard 0 (4 prompts), dies inside shard 1
    with pytest.raises(RuntimeError, match="simulated"):
        precompute_prompt_embeddings(crashing, PROMPTS, tmp_path, shard_size=4, batch_size=2, progress=False)
    index = json.loads((tmp_path / "index.json").read_text())
    assert list(index["shards"]) == ["shard_00000.safetensors"]
    assert not (tmp_path / "shard_00001.safetensors").exists()

    resumed = make_encoder()
    precompute_prompt_embeddings(resumed, PROMPTS, tmp_path, shard_size=4, batch_size=2, progress=False)
    finished = index["shards"]["shard_00000.safetensors"]
    assert len(resumed.seen) == 9 - 4 and not set(resumed.seen) & set(finished)

    # everything done: nothing recomputed; a deleted shard is recomputed alone
    again = make_encoder()
    precompute_prompt_embeddings(again, PROMPTS, tmp_path, shard_size=4, batch_size=2, progress=False)
    assert again.seen == []
    (tmp_path / "shard_00001.safetensors").unlink()
    precompute_prompt_embeddings(again, PROMPTS, tmp_path, shard_size=4, batch_size=2, progress=False)
    assert len(again.seen) == 4
    store = PromptEmbeddingStore(tmp_path)
    torch.testing.assert_close(store.get(PROMPTS)[0], again.encode(PROMPTS)[0], rtol=0, atol=0)


def test_errors(tmp_path) -> None:
    enc = make_encoder()
    precompute_prompt_embeddings(enc, PROMPTS[:2], tmp_path, progress=False)
    store = PromptEmbeddingStore(tmp_path)
    with pytest.raises(KeyError, match="never stored"):
        store.get([PROMPTS[0], "never stored"])
    with pytest.raises(ValueError, match="prompt 1"):
        store.get([PROMPTS[0], " "])
    with pytest.raises(ValueError, match="shard_size"):
        precompute_prompt_embeddings(enc, PROMPTS, tmp_path, shard_size=3, progress=False)
    with pytest.raises(ValueError, match="prompt 0"):
        precompute_prompt_embeddings(enc, [""], tmp_path / "other", progress=False)
    with pytest.raises(ValueError, match="no prompt-embedding index"):
        PromptEmbeddingStore(tmp_path / "missing")
