"""Loaders that YAML configs name by `class_path`: each takes weight paths and returns a built component.

Configs for real weights differ from the demo configs only in these class paths and their paths.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rfvideo.models.causal_options import CausalOptions
from rfvideo.models.causal_wan import CausalWanTransformer
from rfvideo.models.text_encoder import TextEncoder
from rfvideo.models.vae import WanVAE
from rfvideo.rewards.base import FrameReward
from rfvideo.utils.checkpoint import load_checkpoint

__all__ = ["load_causal_wan", "load_image_reward", "load_text_encoder", "load_wan_vae"]

_DEFAULT_OPTIONS = CausalOptions()


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r} (use float32, bfloat16, float16)")
    return dt


def load_causal_wan(
    path: str,
    *,
    subfolder: str | None = "transformer",
    dtype: str = "float32",
    num_frames_per_chunk: int = _DEFAULT_OPTIONS.num_frames_per_chunk,
    local_attn_size: int = _DEFAULT_OPTIONS.local_attn_size,
    sink_size: int = _DEFAULT_OPTIONS.sink_size,
    sink_eviction: str = _DEFAULT_OPTIONS.sink_eviction,
    sink_ema_decay: float = _DEFAULT_OPTIONS.sink_ema_decay,
    rope_mode: str = _DEFAULT_OPTIONS.rope_mode,
    attention_backend: str = _DEFAULT_OPTIONS.attention_backend,
    recache_visibility: str = _DEFAULT_OPTIONS.recache_visibility,
    recache_sinks: str = _DEFAULT_OPTIONS.recache_sinks,
    sink_fold: str = _DEFAULT_OPTIONS.sink_fold,
    partial_eviction: str = _DEFAULT_OPTIONS.partial_eviction,
    init_checkpoint: str | None = None,
    init_from_ema: bool = True,
) -> CausalWanTransformer:
    """Wan2.1 diffusers weights (folder or hub id) as a causal generator; optionally then a stage-1 Lightning
    checkpoint's generator (its EMA by default) on top, loaded strictly.

    The causal options are the fields of `rfvideo.models.CausalOptions` (flat here, so YAML configs name
    them directly, with its defaults); they are built into one `CausalOptions` (validated together) before
    any weight is read, and the loaded model takes that object whole.
    Keep trainable weights in float32 and let the Trainer's `bf16-mixed` precision cast the compute.
    """
    options = CausalOptions(
        num_frames_per_chunk=num_frames_per_chunk, local_attn_size=local_attn_size, sink_size=sink_size,
        sink_eviction=sink_eviction, sink_ema_decay=sink_ema_decay, rope_mode=rope_mode,
        attention_backend=attention_backend, recache_visibility=recache_visibility,
        recache_sinks=recache_sinks, sink_fold=sink_fold, partial_eviction=partial_eviction,
    )  # fmt: skip
    from rfvideo.models.hub import resolve_pretrained

    path = resolve_pretrained(path, what="Wan2.1 transformer")
    model = CausalWanTransformer.from_pretrained(path, subfolder=subfolder, torch_dtype=_dtype(dtype))
    model.set_causal_options(options)
    if init_checkpoint is not None:
        if not Path(init_checkpoint).is_file():
            raise ValueError(f"init_checkpoint {init_checkpoint!r} does not exist")
        sd = load_checkpoint(init_checkpoint)["state_dict"]
        prefix = (
            "generator_ema."
            if init_from_ema and any(k.startswith("generator_ema.") for k in sd)
            else "generator."
        )
        model.load_state_dict(
            {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True
        )
    return model


def load_wan_vae(
    path: str, *, subfolder: str | None = "vae", dtype: str = "float32", decode_context: int | None = None
) -> WanVAE:
    """Wan's VAE from a diffusers folder or hub id (frozen).

    `decode_context`: latent frames the reward's `decode_last` re-decodes before the scored ones (None:
    exact, the whole prefix; see `WanVAE`).
    """
    return WanVAE.from_pretrained(
        path, subfolder=subfolder, torch_dtype=_dtype(dtype), decode_context=decode_context
    )


def load_text_encoder(
    path: str,
    *,
    subfolder: str | None = "text_encoder",
    tokenizer_subfolder: str | None = "tokenizer",
    dtype: str = "bfloat16",
    max_length: int = 512,
    cache_size: int = 1024,
) -> TextEncoder:
    """umT5 encoder + tokenizer from a Wan diffusers folder (frozen; no remote code)."""
    return TextEncoder.from_pretrained(
        path, subfolder=subfolder, tokenizer_subfolder=tokenizer_subfolder, torch_dtype=_dtype(dtype),
        max_length=max_length, cache_size=cache_size,
    )  # fmt: skip


def load_image_reward(
    checkpoint: str,
    *,
    med_config: str,
    tokenizer: str,
    vit: str | dict[str, int] = "large",
    image_size: int = 224,
    dtype: str = "float32",
) -> FrameReward:
    """ImageReward (the paper's reward) from its official local files (see `ImageReward.from_pretrained`).

    `vit` / `image_size` stay at ImageReward v1.0's ("large", 224); a size dict lets tests build tiny files.
    """
    from rfvideo.rewards.image_reward import ImageReward

    return ImageReward.from_pretrained(
        checkpoint, med_config=med_config, tokenizer=tokenizer, vit=vit, image_size=image_size,
        dtype=_dtype(dtype),
    )  # fmt: skip
