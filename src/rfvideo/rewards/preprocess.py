"""Differentiable image preprocessing (and prompt cleaning) for reward models, matching each model's own.

transformers' `CLIPImageProcessor` (used by CLIP, PickScore, HPS and the LAION aesthetic backbone): resize the
shortest edge to `size` (long edge `int(size * long / short)`), bicubic with antialiasing (PIL), centre-crop
`crop_h x crop_w` (top-left at `int((H - crop_h) / 2)`), rescale to [0, 1], normalise with mean/std. Here the
same steps run as torch ops on float input already in [0, 1], so gradients flow back to the pixels.

Deviation from the processor: PIL resizes uint8 images with fixed-point bicubic (a = -0.5) weights and
rounds the result to uint8; `F.interpolate(mode="bicubic", antialias=True)` uses the same kernel in float
without the rounding. On uint8 inputs the two differ by 0.30 grey levels on average (uint8 rounding alone
explains 0.25) and by at most ~1.1 levels, which tests/test_rewards_preprocess.py checks.

HPSv2's scoring transform (open_clip's `image_transform(..., resize_longest_max=True)`, which hpsv2 selects
with `light_augmentation=True`) is a letterbox instead: `ToTensor`, then the LONG side resized to `size`
(short side `round(size * short / long)`, torchvision's bicubic with antialiasing on the float tensor),
then zero padding to `size x size` (left/top get `pad // 2`), then mean/std. The whole frame is scored,
bars included. `Letterbox` runs exactly those float ops, so it matches hpsv2 to float round-off.

Prompt cleaning: open_clip's tokenizer (hpsv2 vendors a copy) runs `ftfy.fix_text`, a double
`html.unescape` and whitespace collapsing before BPE; transformers' CLIP tokenizer does not, so curly
quotes, HTML entities or mojibake get other token ids unless `clean_prompt_open_clip` runs first.

Legend: `n` images, `H W` input size, `h w` output size.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ImagePreprocess",
    "Letterbox",
    "center_crop",
    "clean_prompt_open_clip",
    "letterbox",
    "longest_edge_size",
    "resize_shortest_edge",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# PIL resample codes used by transformers' processors -> F.interpolate modes.
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def shortest_edge_size(h: int, w: int, size: int) -> tuple[int, int]:
    """Output `(h, w)` of transformers' shortest-edge resize: short side `size`, long side truncated."""
    if h <= w:
        return size, int(size * w / h)
    return int(size * h / w), size


def resize_shortest_edge(images: torch.Tensor, size: int, *, mode: str = "bicubic") -> torch.Tensor:
    """`(n 3 H W)` -> `(n 3 h w)` with the short side `size`, antialiased like PIL (differentiable)."""
    h, w = shortest_edge_size(images.shape[-2], images.shape[-1], size)
    if (h, w) == tuple(images.shape[-2:]):
        return images
    antialias = mode in ("bilinear", "bicubic")
    return F.interpolate(
        images, size=(h, w), mode=mode, align_corners=False if antialias else None, antialias=antialias
    )


def center_crop(images: torch.Tensor, height: int, width: int, *, offset: str = "floor") -> torch.Tensor:
    """`(n 3 H W)` -> `(n 3 height width)`, the centre window.

    Args:
        images: `(n 3 H W)`.
        height, width: crop size.
        offset: "floor" places the window at `(H - height) // 2` (transformers' processors); "round" at
            `round((H - height) / 2)` (torchvision's `CenterCrop`, used by OpenAI CLIP's and ImageReward's
            transforms). They differ by one pixel when `H - height` is odd and its half rounds up.
    """
    h, w = images.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"crop {height}x{width} is larger than the image {h}x{w}")
    if offset == "floor":
        top, left = (h - height) // 2, (w - width) // 2
    elif offset == "round":
        top, left = int(round((h - height) / 2.0)), int(round((w - width) / 2.0))
    else:
        raise ValueError(f"offset must be 'floor' or 'round', got {offset!r}")
    return images[..., top : top + height, left : left + width]


@dataclass(kw_only=True)
class ImagePreprocess:
    """Shortest-edge resize, centre crop and normalisation as differentiable torch ops."""

    size: int = 224
    """Target of the shortest edge."""
    crop: tuple[int, int] = (224, 224)
    """Centre crop `(height, width)`."""
    mean: Sequence[float] = CLIP_MEAN
    """Per-channel mean (after rescaling to [0, 1])."""
    std: Sequence[float] = CLIP_STD
    """Per-channel standard deviation."""
    mode: str = "bicubic"
    """`F.interpolate` mode of the resize (the processor's PIL resample)."""
    crop_offset: str = "floor"
    """Where the crop window starts: "floor" (transformers' processors) or "round" (torchvision's
    `CenterCrop`: the reference transform of OpenAI CLIP, hence of the LAION aesthetic predictor)."""

    def __post_init__(self) -> None:
        if self.crop_offset not in ("floor", "round"):
            raise ValueError(f"crop_offset must be 'floor' or 'round', got {self.crop_offset!r}")
        if self.size < 1 or min(self.crop) < 1:
            raise ValueError(f"size and crop must be positive, got size={self.size} crop={self.crop}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must have 3 entries and std > 0, got {self.mean} {self.std}")
        if self.mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"mode must be nearest, bilinear or bicubic, got {self.mode!r}")

    @classmethod
    def from_processor(cls, processor: Any, *, crop_offset: str = "floor") -> ImagePreprocess:
        """Read size, crop, mean, std and resample from a transformers CLIP-style image processor.

        `crop_offset="round"` keeps those settings but places the crop like torchvision, for models whose
        reference pipeline is torchvision's rather than the processor's.
        """
        size = processor.size
        size = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
        if size is None:
            raise ValueError(f"only shortest-edge resizing is supported, processor size is {processor.size}")
        crop = processor.crop_size
        crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop.height, crop.width)
        resample = int(getattr(processor, "resample", 3))
        if resample not in _PIL_RESAMPLE:
            raise ValueError(f"unsupported processor resample {resample}")
        return cls(
            size=int(size),
            crop=(int(crop[0]), int(crop[1])),
            mean=tuple(processor.image_mean),
            std=tuple(processor.image_std),
            mode=_PIL_RESAMPLE[resample],
            crop_offset=crop_offset,
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """`(n 3 H W)` float in [0, 1] -> `(n 3 crop_h crop_w)` normalised model input."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (n 3 H W), got shape {tuple(images.shape)}")
        x = resize_shortest_edge(images.float(), self.size, mode=self.mode)
        return _normalize(center_crop(x, *self.crop, offset=self.crop_offset), self.mean, self.std)


def _normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def longest_edge_size(h: int, w: int, size: int) -> tuple[int, int]:
    """`(h, w)` after open_clip's `ResizeMaxSize`: long side `size`, short `round(size * short / long)`."""
    scale = size / float(max(h, w))
    return round(h * scale), round(w * scale)


def letterbox(images: torch.Tensor, size: int, *, mode: str = "bicubic", fill: float = 0.0) -> torch.Tensor:
    """`(n 3 H W)` -> `(n 3 size size)`: long side resized to `size`, padded with `fill` (differentiable).

    Same arithmetic as open_clip's `ResizeMaxSize` on a tensor: new size by `round`, torchvision's tensor
    resize (`F.interpolate`, antialiased for bilinear/bicubic, no clamp on float input), padding split
    `pad // 2` before (left/top) and the rest after. Unlike `ResizeMaxSize`, an image whose long side is
    already `size` is still padded to a square (open_clip returns it unpadded there, which its ViT rejects).
    """
    h, w = images.shape[-2:]
    new_h, new_w = longest_edge_size(h, w, size)
    if (new_h, new_w) != (h, w):
        antialias = mode in ("bilinear", "bicubic")
        images = F.interpolate(
            images,
            size=(new_h, new_w),
            mode=mode,
            align_corners=False if antialias else None,
            antialias=antialias,
        )
    pad_h, pad_w = size - new_h, size - new_w
    if pad_h or pad_w:
        images = F.pad(images, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)
    return images


@dataclass(kw_only=True)
class Letterbox:
    """HPSv2's scoring transform as differentiable torch ops: letterbox to `size x size`, then mean/std."""

    size: int = 224
    """Side of the square output (the ViT's image size)."""
    mean: Sequence[float] = CLIP_MEAN
    """Per-channel mean (after rescaling to [0, 1])."""
    std: Sequence[float] = CLIP_STD
    """Per-channel standard deviation."""
    fill: float = 0.0
    """Padding value in [0, 1] pixel units, before normalisation (open_clip's `fill_color=0`: black)."""
    mode: str = "bicubic"
    """`F.interpolate` mode of the resize."""

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be positive, got size={self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must have 3 entries and std > 0, got {self.mean} {self.std}")
        if self.mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"mode must be nearest, bilinear or bicubic, got {self.mode!r}")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """`(n 3 H W)` float in [0, 1] -> `(n 3 size size)` normalised model input."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (n 3 H W), got shape {tuple(images.shape)}")
        x = letterbox(images.float(), self.size, mode=self.mode, fill=self.fill)
        return _normalize(x, self.mean, self.std)


_WHITESPACE = re.compile(r"\s+")


def clean_prompt_open_clip(text: str) -> str:
    """open_clip's prompt cleaning (`basic_clean` + `whitespace_clean`), run before its BPE.

    `ftfy.fix_text` (curly quotes -> straight, mojibake, ligatures, NFC ...), `html.unescape` twice
    (`&amp;amp;` -> `&`), whitespace runs collapsed to one space, stripped, lower-cased (Python's
    `str.lower`, as open_clip; transformers' CLIP tokenizer lower-cases again, a no-op then).
    """
    try:
        import ftfy
    except ImportError as err:  # a silent fallback would tokenize some prompts differently from open_clip
        raise ImportError("open_clip prompt cleaning needs ftfy (pip install ftfy)") from err
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()
