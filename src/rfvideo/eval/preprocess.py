"""Video inputs and VBench's frame preprocessing, mirrored in plain torch (no torchvision).

VBench reads mp4 files as uint8 and resizes *float* copies of them (``torch.Tensor(uint8_array)``), except
for the ViCLIP dimensions, which resize the uint8 tensor itself (so the resized frames are rounded back
to uint8), and appearance style, which resizes PIL images. Each helper here reproduces one of those paths
exactly so that scores computed from the same uint8 frames match VBench's own code.

In-loop videos are float in [0, 1] and never went through H.264 or uint8 rounding: numbers computed on
them are "VBench-style", not VBench numbers (use ``score_video_folder`` on mp4 files for those).

Shape legend:
    b: videos, f/n: frames, c: channels (3, RGB), h/w: height/width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VideoBatch = torch.Tensor | Sequence[torch.Tensor]


def as_video_list(videos: VideoBatch) -> list[torch.Tensor]:
    """Split a batch into single videos and validate them.

    Args:
        videos: ``(b f 3 h w)`` tensor or a list of ``(f 3 h w)`` tensors (variable length allowed); float
            in [0, 1] or uint8 in [0, 255].

    Returns:
        List of ``(f 3 h w)`` tensors.
    """
    if isinstance(videos, torch.Tensor):
        if videos.ndim != 5:
            raise ValueError(f"videos must be (b f 3 h w), got shape {tuple(videos.shape)}")
        out = list(videos.unbind(0))
    else:
        out = list(videos)
    if not out:
        raise ValueError("videos is empty")
    for i, v in enumerate(out):
        if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[1] != 3:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"video {i} must be a (f 3 h w) tensor, got {shape}")
        if v.shape[0] < 1:
            raise ValueError(f"video {i} has no frames")
        if v.dtype != torch.uint8 and not v.is_floating_point():
            raise ValueError(f"video {i} must be uint8 or floating point, got {v.dtype}")
    return out


def to_255(video: torch.Tensor) -> torch.Tensor:
    """``(n 3 h w)`` uint8 [0, 255] or float [0, 1] -> float32 in [0, 255] (VBench's working range)."""
    if video.dtype == torch.uint8:
        return video.float()
    return video.float().mul(255.0)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """``(n 3 h w)`` -> uint8, rounding float [0, 1] input the way a video writer would."""
    if video.dtype == torch.uint8:
        return video
    return video.float().mul(255.0).round().clamp(0, 255).to(torch.uint8)


def short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """Output (h, w) of torchvision's ``Resize(size)``: short side to ``size``, long side truncated."""
    if w <= h:
        return int(size * h / w), size
    return size, int(size * w / h)


def resize(x: torch.Tensor, hw: tuple[int, int], mode: str, round_uint8: bool = False) -> torch.Tensor:
    """torchvision tensor ``resize(antialias=False)`` on float ``(n c h w)`` in [0, 255].

    Args:
        x: float frames in [0, 255].
        hw: output (h, w).
        mode: "bilinear" or "bicubic".
        round_uint8: mimic a uint8 input tensor: clamp (bicubic) and round the result.
    """
    if tuple(x.shape[-2:]) != tuple(hw):
        x = F.interpolate(x, size=hw, mode=mode, align_corners=False, antialias=False)
    if round_uint8:
        x = x.clamp(0, 255).round()
    return x


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``CenterCrop(size)`` for an image at least ``size`` on each side."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"center_crop: frame {h}x{w} is smaller than the crop {size}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def normalize(x01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(-1, 1, 1)
    return (x01 - m) / s


def clip_preprocess(video: torch.Tensor, n_px: int = 224, round_uint8: bool = False) -> torch.Tensor:
    """VBench ``clip_transform``: short side -> n_px (bicubic), centre crop, /255, CLIP mean/std.

    Args:
        video: ``(n 3 h w)`` uint8 or float [0, 1].
        n_px: output side.
        round_uint8: VBench's ViCLIP dimensions resize a uint8 tensor, which rounds; the others do not.

    Returns:
        ``(n 3 n_px n_px)`` float32.
    """
    x = to_255(video)
    x = resize(x, short_side_size(x.shape[-2], x.shape[-1], n_px), "bicubic", round_uint8)
    x = center_crop(x, n_px)
    return normalize(x / 255.0, CLIP_MEAN, CLIP_STD)


def dino_preprocess(video: torch.Tensor, n_px: int = 224) -> torch.Tensor:
    """VBench ``dino_transform``: short side -> n_px (bilinear), **no crop**, /255, ImageNet mean/std."""
    x = to_255(video)
    x = resize(x, short_side_size(x.shape[-2], x.shape[-1], n_px), "bilinear")
    return normalize(x / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def clip_preprocess_pil(video: torch.Tensor, n_px: int = 224) -> torch.Tensor:
    """VBench ``clip_transform_Image`` (appearance style): PIL bicubic resize of uint8 frames, crop, norm.

    PIL's resize filters with a support that widens when downscaling (antialiased) and rounds to uint8,
    so this path goes through PIL itself rather than an approximation.
    """
    from PIL import Image

    frames = to_uint8(video).permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for frame in frames:
        img = Image.fromarray(frame)
        w, h = img.size
        nh, nw = short_side_size(h, w, n_px)
        if (nh, nw) != (h, w):
            img = img.resize((nw, nh), Image.BICUBIC)
        arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        out.append(center_crop(arr, n_px))
    x = torch.stack(out).float().div(255.0)
    return normalize(x, CLIP_MEAN, CLIP_STD)


def middle_frame_indices(num_frames: int, length: int) -> list[int]:
    """VBench's "middle" sampling: split [0, length) into bins, take each bin's middle, pad with the last.

    Matches ``vbench.utils.get_frame_indices(num_frames, length, sample="middle")``.
    """
    if num_frames < 1 or length < 1:
        raise ValueError(
            f"middle_frame_indices needs num_frames >= 1 and length >= 1, got {num_frames}, {length}"
        )
    n = min(num_frames, length)
    edges = np.linspace(start=0, stop=length, num=n + 1).astype(int)
    idx = [int((edges[i] + edges[i + 1] - 1) // 2) for i in range(n)]
    return idx + [idx[-1]] * (num_frames - n)
