"""One registry for the decoder family: `wan | tae | lighttae | lightvae` -> how to build each.

`build_decoder(name, path_or_hub_id, torch_dtype=..., device=...)` is what the pipeline, YAML and the CLI's
`--decoder` call; adding a decoder is one `DecoderSpec` entry. Every built decoder fills the slot described
in `rfvideo.decoders.protocol` (normalised latents in, `(b F 3 H W)` in [0, 1] out).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["DECODERS", "DecoderSpec", "build_decoder"]


@dataclass(frozen=True, kw_only=True)
class DecoderSpec:
    """One decoder of the family."""

    build: Callable[..., nn.Module]
    """`build(path_or_hub_id, *, torch_dtype, device, **kw) -> decoder`."""
    help: str
    """One line for `--help` and docs."""


def _build_wan(
    path: str | os.PathLike[str], *, torch_dtype: torch.dtype | None, device: Any, **kw: Any
) -> nn.Module:
    from rfvideo.models.vae import WanVAE

    vae = WanVAE.from_pretrained(path, torch_dtype=torch_dtype, **kw)
    return vae.to(device) if device is not None else vae


def _build_tiny(latent_space: str) -> Callable[..., nn.Module]:
    def build(
        path: str | os.PathLike[str], *, torch_dtype: torch.dtype | None, device: Any, **kw: Any
    ) -> nn.Module:
        from rfvideo.decoders.tiny import TinyVideoDecoder

        return TinyVideoDecoder.from_pretrained(
            path, latent_space=latent_space, torch_dtype=torch_dtype, device=device, **kw
        )

    return build


def _build_light_vae(
    path: str | os.PathLike[str], *, torch_dtype: torch.dtype | None, device: Any, **kw: Any
) -> nn.Module:
    from rfvideo.decoders.light_vae import load_light_vae

    return load_light_vae(path, torch_dtype=torch_dtype, device=device, **kw)


DECODERS: dict[str, DecoderSpec] = {
    "wan": DecoderSpec(build=_build_wan, help="exact Wan2.1 causal VAE (diffusers folder or hub id)"),
    "tae": DecoderSpec(
        build=_build_tiny("normalized"), help="TAEHV taew2_1 tiny decoder (normalised latents)"
    ),
    "lighttae": DecoderSpec(
        build=_build_tiny("raw"), help="LightTAE lighttaew2_1 tiny decoder (raw latents, converted inside)"
    ),
    "lightvae": DecoderSpec(
        build=_build_light_vae, help="LightVAE lightvaew2_1: Wan VAE at quarter width (original Wan keys)"
    ),
}


def build_decoder(
    name: str,
    path_or_hub_id: str | os.PathLike[str],
    *,
    torch_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **kw: Any,
) -> nn.Module:
    """Build decoder `name` from a local path or hub id.

    Args:
        name: One of `DECODERS` (`wan`, `tae`, `lighttae`, `lightvae`).
        path_or_hub_id: `wan`: diffusers folder / hub id (subfolder `vae`); `tae` / `lighttae`: a
            `.pth` / `.safetensors` file, a folder holding one, or a hub id with `filename=`;
            `lightvae`: an original-layout file (or folder / hub id with `filename=`), or a diffusers folder.
        torch_dtype, device: Where the decoder lives.
        **kw: Passed to the builder (`WanVAE.from_pretrained`, `TinyVideoDecoder.from_pretrained`,
            `load_light_vae`), e.g. `filename`, `widths`, `decode_context`.

    Raises:
        ValueError: An unknown name (the message lists the valid ones), or the builder's load errors.
    """
    spec = DECODERS.get(name)
    if spec is None:
        raise ValueError(f"unknown decoder {name!r}; valid: {', '.join(DECODERS)}")
    return spec.build(path_or_hub_id, torch_dtype=torch_dtype, device=device, **kw)
