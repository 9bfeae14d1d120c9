"""BLIP parts on transformers modules, with a converter from the original BLIP (salesforce/BLIP) key layout.

The original BLIP code (timm-style ViT in `vit.py`, a BERT with cross-attention in `med.py`) is rebuilt on
transformers' `BlipVisionModel` and `BlipTextModel`, whose math is the same:

- ViT: pre-norm blocks, fused qkv (same (3, heads, head_dim) split), exact GELU, final LayerNorm applied to
  every token. BLIP's ViT uses LayerNorm eps 1e-6 (timm default); transformers' default is 1e-5, so the
  config sets it explicitly.
- Text: BERT without token-type embeddings; every layer has self-attention, cross-attention to the image
  tokens, then the FFN. transformers builds the cross-attention only when `config.is_decoder=True`; the
  self-attention stays bidirectional because `forward(is_decoder=False)` is passed at call time.
- Padding masks: BLIP adds -10000 to masked logits, transformers adds finfo.min; after softmax both give
  weight exactly 0 in fp32, so outputs agree.

Shapes: b batch, n tokens, d width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from transformers import BlipTextConfig, BlipVisionConfig

#: BLIP ViT sizes by name (`create_vit` in BLIP's blip.py).
VIT_SIZES: dict[str, dict[str, int]] = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def blip_vision_config(
    vit: str | Mapping[str, int] = "large", *, image_size: int = 224, patch_size: int = 16
) -> BlipVisionConfig:
    """transformers config equal to BLIP's `VisionTransformer` (mlp ratio 4, eps 1e-6, exact GELU).

    Args:
        vit: "base", "large", or a dict with hidden_size, num_hidden_layers, num_attention_heads,
            intermediate_size (tiny test models).
        image_size: input resolution (ImageReward: 224).
        patch_size: patch side (BLIP: 16).
    """
    if isinstance(vit, str):
        if vit not in VIT_SIZES:
            raise ValueError(f"vit must be one of {sorted(VIT_SIZES)} or a size dict, got {vit!r}")
        sizes = VIT_SIZES[vit]
    else:
        sizes = dict(vit)
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    return BlipVisionConfig(
        **sizes,
        image_size=image_size,
        patch_size=patch_size,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        attention_dropout=0.0,
    )


def blip_text_config(med_config: Mapping[str, Any], *, encoder_width: int) -> BlipTextConfig:
    """transformers config equal to BLIP's `med_config.json` BERT with cross-attention to `encoder_width`.

    BLIP overrides `med_config.encoder_width` with the ViT width (1024 for ViT-L), so it is an argument here.
    """
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    missing = [k for k in required if k not in med_config]
    if missing:
        raise ValueError(f"med_config lacks keys {missing}")
    if not med_config.get("add_cross_attention", True):
        raise ValueError("med_config has add_cross_attention=false; ImageReward's text encoder needs it")
    return BlipTextConfig(
        vocab_size=med_config["vocab_size"],
        hidden_size=med_config["hidden_size"],
        encoder_hidden_size=encoder_width,
        intermediate_size=med_config["intermediate_size"],
        num_hidden_layers=med_config["num_hidden_layers"],
        num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=med_config.get("max_position_embeddings", 512),
        hidden_act=med_config.get("hidden_act", "gelu"),
        layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=med_config.get("pad_token_id", 0),
        # Builds the cross-attention layers; forward(is_decoder=False) keeps self-attention bidirectional.
        is_decoder=True,
    )


# Original BLIP ViT names (timm layout) -> transformers BlipVisionModel names.
_VIT_RULES: list[tuple[str, str]] = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.(weight|bias)$", r"embeddings.patch_embedding.\1"),
    (r"^blocks\.(\d+)\.norm1\.(weight|bias)$", r"encoder.layers.\1.layer_norm1.\2"),
    (r"^blocks\.(\d+)\.norm2\.(weight|bias)$", r"encoder.layers.\1.layer_norm2.\2"),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"encoder.layers.\1.self_attn.qkv.\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"encoder.layers.\1.self_attn.projection.\2"),
    (r"^blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", r"encoder.layers.\1.mlp.\2.\3"),
    (r"^norm\.(weight|bias)$", r"post_layernorm.\1"),
]

# BLIP's med.py BERT already uses the names of transformers' BlipTextModel (it was adapted from it).
_TEXT_RULES: list[tuple[str, str]] = [
    (r"^(embeddings\.(word_embeddings|position_embeddings|LayerNorm)\.(weight|bias))$", r"\1"),
    (
        r"^(encoder\.layer\.\d+\.(attention|crossattention)\.(self\.(query|key|value)|output\.dense|output\.LayerNorm)"
        r"\.(weight|bias))$",
        r"\1",
    ),
    (r"^(encoder\.layer\.\d+\.(intermediate\.dense|output\.dense|output\.LayerNorm)\.(weight|bias))$", r"\1"),
]

#: Buffers of the original checkpoint that carry no learned weight.
_TEXT_IGNORED = re.compile(r"^embeddings\.position_ids$")


def _apply_rules(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, repl in rules:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def convert_blip_vision_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map BLIP `visual_encoder.*` tensors (prefix already stripped) to `BlipVisionModel` names.

    Raises:
        ValueError: a key that no rule maps (a wrong prefix or an unsupported variant).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = _apply_rules(key, _VIT_RULES)
        if new is None:
            raise ValueError(f"unmapped BLIP ViT key {key!r}")
        out[new] = value
    return out


def convert_blip_text_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map BLIP `text_encoder.*` tensors (prefix already stripped) to `BlipTextModel` names.

    Raises:
        ValueError: a key that no rule maps (e.g. a pooler, which ImageReward's encoder does not have).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _TEXT_IGNORED.match(key):
            continue
        new = _apply_rules(key, _TEXT_RULES)
        if new is None:
            raise ValueError(f"unmapped BLIP text-encoder key {key!r}")
        out[new] = value
    return out
