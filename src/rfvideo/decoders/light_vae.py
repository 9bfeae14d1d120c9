"""LightVAE (`lightvaew2_1`): Wan2.1's causal VAE with every channel width x0.25, through `WanVAE`.

The architecture is diffusers' `AutoencoderKLWan` with `base_dim` 96 -> 24 (every stage width follows
`base_dim`); latents, strides and normalisation stay Wan2.1's, so it decodes the generator's latents and
streams exactly as the Wan VAE does (`WanVAE.stream_decoder`). Its file keeps the *original* Wan key names
(`decoder.upsamples.{i}.residual.{j}.*`, `conv2.*`, ...); they map onto diffusers' names through diffusers'
own converter for the Wan VAE (`convert_wan_vae_to_diffusers`, the converter behind
`AutoencoderKLWan.from_single_file`). A diffusers-layout folder loads through `WanVAE.from_pretrained`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rfvideo.decoders.weights import load_state_dict_file, resolve_weights_file
from rfvideo.models.vae import WanVAE

__all__ = ["LIGHT_VAE_BASE_DIM", "light_vae_config", "load_light_vae", "wan_vae_from_original_state_dict"]

# Wan2.1's base_dim (96) x 0.25.
LIGHT_VAE_BASE_DIM = 24


def light_vae_config(*, base_dim: int = LIGHT_VAE_BASE_DIM, **overrides: Any) -> dict[str, Any]:
    """`AutoencoderKLWan` config of LightVAE: Wan2.1's defaults (latent stats included) at `base_dim`."""
    if isinstance(base_dim, bool) or not isinstance(base_dim, int) or base_dim < 1:
        raise ValueError(f"base_dim must be a positive int, got {base_dim!r}")
    return {"base_dim": base_dim, **overrides}


def wan_vae_from_original_state_dict(
    sd: Mapping[str, torch.Tensor], *, source: str = "state dict", **config: Any
) -> WanVAE:
    """Build `AutoencoderKLWan(**config)` and load original-Wan-named weights into it strictly.

    Raises:
        ValueError: Keys the converted file lacks or has in excess, or a shape mismatch, in one line.
    """
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    converted = convert_wan_vae_to_diffusers(dict(sd))
    vae = AutoencoderKLWan(**config)
    own = vae.state_dict()
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{source}: key mismatch with AutoencoderKLWan(base_dim={vae.config.base_dim}) after converting "
            f"original Wan names: missing {missing[:4]}{' ...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{source}: shape mismatch at {key!r}: file {tuple(value.shape)}, "
                f"model {tuple(own[key].shape)} (base_dim={vae.config.base_dim})"
            )
    vae.load_state_dict(converted, strict=True)
    return WanVAE(vae)


def load_light_vae(
    path_or_hub_id: str | os.PathLike[str],
    *,
    filename: str | None = None,
    base_dim: int = LIGHT_VAE_BASE_DIM,
    torch_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    subfolder: str | None = "vae",
    **config: Any,
) -> WanVAE:
    """LightVAE as a `WanVAE`, from an original-layout file or a diffusers folder.

    Args:
        path_or_hub_id: A `.pth` / `.safetensors` file with original Wan key names (e.g.
            `lightvaew2_1.pth`), a folder holding one (or a diffusers folder with `config.json`, or one
            with a `subfolder`), or a hub id with `filename`.
        filename: The file inside a folder or hub repository.
        base_dim: Base channel width (24 = Wan2.1's 96 x 0.25) for original-layout files.
        torch_dtype, device: Where the VAE lives (default float32, CPU).
        subfolder: The diffusers folder's VAE subfolder, used when the folder has one.
        **config: Other `AutoencoderKLWan` arguments for original-layout files.
    """
    local = Path(os.fspath(path_or_hub_id)).expanduser()
    if local.is_dir() and filename is None:
        if (local / "config.json").is_file():
            vae = WanVAE.from_pretrained(local, subfolder=None, torch_dtype=torch_dtype)
            return vae.to(device) if device is not None else vae
        if subfolder is not None and (local / subfolder / "config.json").is_file():
            vae = WanVAE.from_pretrained(local, subfolder=subfolder, torch_dtype=torch_dtype)
            return vae.to(device) if device is not None else vae
    file = resolve_weights_file(path_or_hub_id, filename, what="LightVAE")
    vae = wan_vae_from_original_state_dict(
        load_state_dict_file(file), source=str(file), **light_vae_config(base_dim=base_dim, **config)
    )
    return vae.to(device=device, dtype=torch_dtype)
