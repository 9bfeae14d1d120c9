"""One table of small model sizes, and the seeded builders of random tiny models from it.

Tests, `bench/`, the offline demo and the notebooks build their generator, VAE and text encoder here, so a
size is declared once (torchtitan's `"debugmodel"` flavour). Each builder returns the type a real
checkpoint loader returns (`rfvideo.modules.components.load_*`), so a YAML config swaps a tiny builder for
a real one by changing only `class_path` and the weight path.

Generator flavours (`WAN_FLAVOURS`: `CausalWanTransformer` / diffusers' `WanTransformer3DModel` config
keys; every small one keeps Wan's 2 * (d // 6) RoPE split of the head dim; `in_channels` = latent channels):
  "tiny":        2 layers, 2 x 16 heads (width 32), 4 channels, text 24: the tests', demo's, notebooks'.
  "tiny16":      "tiny" with Wan's 16 latent channels and text width 64: the benchmarks' quick size.
  "small":       2 layers, 2 x 32 (width 64), 16 channels, text 32: the serving benchmark.
  "medium":      4 layers, 2 x 64 (width 128), ffn 256: the rollout benchmark.
  "mid":         4 layers, 8 x 64 (width 512), ffn 2048: the pipeline / decoder / cache benchmarks' CPU size.
  "wan2.1-1.3b": Wan2.1-T2V-1.3B's published transformer/config.json (memory estimate, device benchmark).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan
from torch import nn
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from rfvideo.models.causal_wan import CausalWanTransformer
from rfvideo.models.positioned_wan import PositionedCausalWan
from rfvideo.models.text_encoder import TextEncoder
from rfvideo.models.vae import WanVAE

__all__ = [
    "WAN_FLAVOURS",
    "randomize_",
    "tiny_causal_wan",
    "tiny_text_encoder",
    "tiny_wan_vae",
    "wan_config",
]

#: The generator's architecture keys every flavour shares (Wan2.1's choices).
_WAN_COMMON: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}

#: Generator sizes by name (see the module docstring).
WAN_FLAVOURS: dict[str, dict[str, Any]] = {
    "tiny": {
        "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 4,
        "out_channels": 4, "text_dim": 24, "freq_dim": 32, "ffn_dim": 64,
    },
    "tiny16": {
        "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 16,
        "out_channels": 16, "text_dim": 64, "freq_dim": 64, "ffn_dim": 64,
    },
    "small": {
        "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 32, "in_channels": 16,
        "out_channels": 16, "text_dim": 32, "freq_dim": 32, "ffn_dim": 128,
    },
    "medium": {
        "num_layers": 4, "num_attention_heads": 2, "attention_head_dim": 64, "in_channels": 16,
        "out_channels": 16, "text_dim": 64, "freq_dim": 64, "ffn_dim": 256,
    },
    "mid": {
        "num_layers": 4, "num_attention_heads": 8, "attention_head_dim": 64, "in_channels": 16,
        "out_channels": 16, "text_dim": 64, "freq_dim": 64, "ffn_dim": 2048,
    },
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json
    "wan2.1-1.3b": {
        "num_layers": 30, "num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16,
        "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960,
    },
}  # fmt: skip


def wan_config(flavour: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """The `WanTransformer3DModel` / `CausalWanTransformer` config keys of `flavour`, with `overrides`.

    Raises:
        ValueError: `flavour` is not in `WAN_FLAVOURS`.
    """
    if flavour not in WAN_FLAVOURS:
        raise ValueError(f"flavour {flavour!r} is not one of {sorted(WAN_FLAVOURS)}")
    return {**_WAN_COMMON, **WAN_FLAVOURS[flavour], **overrides}


def randomize_(module: nn.Module, generator: torch.Generator, scale: float = 0.2) -> nn.Module:
    """Overwrite every parameter with seeded noise, so that no weight (norm affines, zero-init output
    layers, adaLN tables) is trivial and a swapped or dropped tensor changes the output.

    Norm gains are drawn around 1 (not 0) so activations keep their scale through the blocks.
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32) * scale
            if "norm" in name and name.endswith("weight"):
                noise = noise + 1.0
            p.copy_(noise.to(p.dtype))
    return module


def tiny_causal_wan(
    *,
    flavour: str = "tiny",
    num_layers: int | None = None,
    num_attention_heads: int | None = None,
    attention_head_dim: int | None = None,
    in_channels: int | None = None,
    text_dim: int | None = None,
    ffn_dim: int | None = None,
    freq_dim: int | None = None,
    num_frames_per_chunk: int = 1,
    local_attn_size: int = -1,
    sink_size: int = 0,
    seed: int = 0,
    init_scale: float | None = None,
    patch_size: tuple[int, int, int] | None = None,
    absolute_positions: bool = False,
    weights: str | None = None,
    require_weights: bool = True,
) -> CausalWanTransformer:
    """A small `CausalWanTransformer` of `flavour` (diffusers' default init, or seeded noise when
    `init_scale` is set); a size argument left `None` takes the flavour's value.

    `absolute_positions`: a `PositionedCausalWan` (learned frame / row / column embeddings of the tokens,
    zero at init), the demo's generator; see `models.positioned_wan` for why.
    `weights`: a safetensors state dict loaded over the init (the stage-1 generator `make demo` leaves at
    `outputs/demo/stage1/generator.safetensors`); when that file is missing, `require_weights=False` keeps
    the init and warns (a config that must run before `make demo` has), else it raises.
    """
    sizes = {
        "num_layers": num_layers, "num_attention_heads": num_attention_heads,
        "attention_head_dim": attention_head_dim, "in_channels": in_channels, "text_dim": text_dim,
        "ffn_dim": ffn_dim, "freq_dim": freq_dim,
        "patch_size": None if patch_size is None else tuple(patch_size),
    }  # fmt: skip
    cfg = wan_config(flavour, **{k: v for k, v in sizes.items() if v is not None})
    cfg["out_channels"] = cfg["in_channels"]  # a generator predicts a velocity of its latent's shape
    torch.manual_seed(seed)  # diffusers' default init draws from the global generator
    model = (PositionedCausalWan if absolute_positions else CausalWanTransformer)(
        **cfg, num_frames_per_chunk=num_frames_per_chunk, local_attn_size=local_attn_size, sink_size=sink_size
    )
    if init_scale is not None:
        randomize_(model, torch.Generator().manual_seed(seed), init_scale)
    if weights is not None:
        if Path(weights).is_file():
            from safetensors.torch import load_file

            model.load_state_dict(load_file(weights))
        elif require_weights:
            raise ValueError(f"weights {weights!r} not found (run `make demo` first, which writes it)")
        else:
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
    randomize_(model, torch.Generator().manual_seed(seed), 0.5)
    return TextEncoder(model, ByT5Tokenizer(), max_length=max_length, cache_size=256)
