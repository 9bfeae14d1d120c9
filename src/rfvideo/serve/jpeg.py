"""Video frames -> JPEG bytes (Pillow), the binary payload of the WebSocket.

Legend: `F` pixel frames, `H W` pixel height/width.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

__all__ = ["encode_jpeg", "encode_jpegs", "to_uint8"]


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """Frames (F 3 H W) float in [0, 1] -> (F H W 3) uint8, rounding to nearest (values are clamped)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (F 3 H W), got shape {tuple(frames.shape)}")
    x = frames.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
    return (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def encode_jpeg(pixels: torch.Tensor, *, quality: int = 85) -> bytes:
    """One frame (H W 3) uint8 -> baseline JPEG bytes (4:2:0, fixed settings: same input, same bytes)."""
    buf = io.BytesIO()
    Image.fromarray(pixels.numpy()).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def encode_jpegs(frames: torch.Tensor, *, quality: int = 85) -> list[bytes]:
    """Frames (F 3 H W) float in [0, 1] -> one JPEG per frame."""
    return [encode_jpeg(p, quality=quality) for p in to_uint8(frames)]
