"""Tiny seeded pieces shared by the streaming tests: a causal generator, a Wan VAE, a prompt encoder.

Legend: `b` batch, `n d` text tokens / width, `c` latent channels.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from diffusers import AutoencoderKLWan

from helpers import randomize_, tiny_wan_config
from rfvideo.models import CausalWanTransformer, WanVAE

K = 2  # latent frames per chunk
LATENT = (2, 2)  # latent (h, w): 16x16 pixels, one token per frame after the 2x2 patch
TEXT_TOKENS, TEXT_DIM = 5, 24


def tiny_model(seed: int = 0, **causal: Any) -> CausalWanTransformer:
    model = CausalWanTransformer(
        **tiny_wan_config(**causal.pop("config", {})), num_frames_per_chunk=K, **causal
    )
    return randomize_(model, torch.Generator().manual_seed(seed)).eval()


def tiny_vae(seed: int = 0) -> WanVAE:
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
        latents_mean=[0.1, -0.2, 0.3, 0.5], latents_std=[1.5, 0.5, 2.0, 0.8],
    )  # fmt: skip
    # scale 0.2 keeps decoded pixels inside (-1, 1): the output clamp hides nothing
    return WanVAE(randomize_(vae, torch.Generator().manual_seed(seed), scale=0.2))


def encode_prompt(prompts: list[str]) -> torch.Tensor:
    """Deterministic stand-in for the text encoder: embeddings `(b n d)` seeded by each prompt's CRC."""
    out = [
        torch.randn(TEXT_TOKENS, TEXT_DIM, generator=torch.Generator().manual_seed(zlib.crc32(p.encode())))
        for p in prompts
    ]
    return torch.stack(out)
