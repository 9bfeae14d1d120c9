"""Subject consistency (DINO features) and background consistency (CLIP image features), as VBench.

For every frame t > 0 of a video: ``(max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2``. A video's
score is the mean over its compared frames; the dataset score is the sum over all videos divided by the
number of compared frames (frame-weighted, as VBench's single-process code computes it).
Source: vbench/subject_consistency.py, vbench/background_consistency.py (vbench 0.1.5). All frames are used.

Shape legend: b videos, f frames, d feature width, h/w height/width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from rfvideo.eval.preprocess import VideoBatch, as_video_list, clip_preprocess, dino_preprocess
from rfvideo.eval.result import DimensionScore

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _chain_similarity(feats: torch.Tensor) -> tuple[float, int]:
    """Sum of VBench's per-frame similarity over ``(f d)`` features (L2-normalised here) and the count."""
    feats = F.normalize(feats.float(), dim=-1, p=2)
    total = 0.0
    for t in range(1, feats.shape[0]):
        # .item() then max() in Python, as VBench: clipping happens per term in float64.
        sim_pre = max(0.0, F.cosine_similarity(feats[t - 1 : t], feats[t : t + 1]).item())
        sim_fir = max(0.0, F.cosine_similarity(feats[0:1], feats[t : t + 1]).item())
        total += (sim_pre + sim_fir) / 2
    return total, feats.shape[0] - 1


def _consistency(
    dimension: str, videos: VideoBatch, encode: Callable[[torch.Tensor], torch.Tensor]
) -> DimensionScore:
    per_video, weights = [], []
    total, count = 0.0, 0
    for i, video in enumerate(as_video_list(videos)):
        if video.shape[0] < 2:
            raise ValueError(f"{dimension}: video {i} has {video.shape[0]} frame(s); at least 2 are needed")
        with torch.no_grad():
            feats = encode(video)
        s, n = _chain_similarity(feats)
        per_video.append(s / n)
        weights.append(float(n))
        total += s
        count += n
    return DimensionScore(dimension, per_video, total / count, weights)


def subject_consistency(
    videos: VideoBatch, dino: FeatureFn, device: torch.device | str = "cpu", batch_size: int = 16
) -> DimensionScore:
    """VBench subject consistency.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        dino: DINO-style extractor, ``(n 3 h w)`` ImageNet-normalised -> ``(n d)`` (VBench: DINO ViT-B/16
            CLS features). Frames are short side 224 bilinear, not cropped.
        device: where the extractor runs.
        batch_size: frames per forward (VBench uses 1; batching changes results only by float noise).
    """

    def encode(video: torch.Tensor) -> torch.Tensor:
        x = dino_preprocess(video)
        return torch.cat(
            [dino(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
        )

    return _consistency("subject_consistency", videos, encode)


def background_consistency(
    videos: VideoBatch, clip_image: FeatureFn, device: torch.device | str = "cpu", batch_size: int = 64
) -> DimensionScore:
    """VBench background consistency.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        clip_image: CLIP image encoder, ``(n 3 224 224)`` CLIP-normalised -> ``(n d)`` (VBench: ViT-B/32
            ``encode_image``). Frames are short side 224 bicubic, centre-cropped.
        device: where the encoder runs.
        batch_size: frames per forward (VBench encodes a whole video at once).
    """

    def encode(video: torch.Tensor) -> torch.Tensor:
        x = clip_preprocess(video)
        return torch.cat(
            [clip_image(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
        )

    return _consistency("background_consistency", videos, encode)
