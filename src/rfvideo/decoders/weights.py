"""Weights files for the decoders: a plain state dict from `.safetensors` or `.pth`, local or on the hub.

`.pth` files load with `torch.load(weights_only=True)` (no pickled code runs); hub files come through
`huggingface_hub.hf_hub_download` after `rfvideo.models.hub.resolve_pretrained` has told a mistyped local
path from a hub id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["load_state_dict_file", "resolve_weights_file"]


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A plain state dict from `.safetensors` or `.pth`/`.pt` (`torch.load(weights_only=True)`)."""
    p = Path(path)
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    if p.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
        if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise ValueError(f"{p}: expected a plain state dict of tensors, got {type(sd).__name__}")
        return dict(sd)
    raise ValueError(f"weights file must be .safetensors or .pth/.pt, got {str(p)!r}")


def resolve_weights_file(
    path_or_hub_id: str | os.PathLike[str], filename: str | None = None, *, what: str = "weights"
) -> Path:
    """A local weights file from a file, a folder holding one weights file (or `filename`), or a hub id."""
    text = os.fspath(path_or_hub_id)
    local = Path(text).expanduser()
    if local.is_file():
        return local
    if local.is_dir():
        if filename is not None:
            if not (local / filename).is_file():
                raise ValueError(f"{what}: no file {filename!r} in {text!r}")
            return local / filename
        found = sorted(q for q in local.iterdir() if q.suffix in (".safetensors", ".pth", ".pt"))
        if len(found) != 1:
            raise ValueError(
                f"{what}: {text!r} holds {len(found)} weights files ({[q.name for q in found]}); "
                "pass filename="
            )
        return found[0]
    from rfvideo.models.hub import resolve_pretrained

    hub_id = resolve_pretrained(text, what=what)
    if filename is None:
        raise ValueError(f"{what}: hub id {hub_id!r} needs filename= (e.g. 'taew2_1.pth')")
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(hub_id, filename))
