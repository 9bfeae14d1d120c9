"""Aesthetic quality, as VBench (vbench/aesthetic_quality.py): LAION predictor on CLIP ViT-L/14.

Every frame: CLIP preprocessing (short side 224 bicubic, centre crop), ``encode_image``, L2-normalise,
linear head (768 -> 1), divide by 10. Per video: mean over frames; dataset: mean over videos.

Shape legend: n frames, d CLIP embedding width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from rfvideo.eval.preprocess import VideoBatch, as_video_list, clip_preprocess
from rfvideo.eval.result import DimensionScore


def aesthetic_quality(
    videos: VideoBatch,
    clip_image: Callable[[torch.Tensor], torch.Tensor],
    head: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    batch_size: int = 32,
) -> DimensionScore:
    """VBench aesthetic quality.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        clip_image: CLIP image encoder ``(n 3 224 224) -> (n d)`` (VBench: ViT-L/14).
        head: LAION aesthetic predictor ``(n d) -> (n 1)`` (``nn.Linear(768, 1)``).
        device: where the models run.
        batch_size: frames per forward (VBench: 32).
    """
    per_video = []
    for video in as_video_list(videos):
        x = clip_preprocess(video)
        scores = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                feats = F.normalize(clip_image(x[i : i + batch_size].to(device)).float(), dim=-1, p=2)
                scores.append(head(feats).squeeze(dim=-1).float().cpu())
        per_video.append((torch.cat(scores) / 10).mean().item())
    return DimensionScore("aesthetic_quality", per_video, sum(per_video) / len(per_video))
