"""Temporal flickering, as VBench (vbench/temporal_flickering.py).

Per video: mean over consecutive frame pairs of the mean absolute difference in 0..255, score
``(255 - mean MAE) / 255``; dataset score: mean over videos. No model. VBench evaluates it on videos of
static prompts (its prompt suite's temporal_flickering list). All frames are used.

Shape legend: f frames, h/w height/width.
"""

from __future__ import annotations

from rfvideo.eval.preprocess import VideoBatch, as_video_list, to_255
from rfvideo.eval.result import DimensionScore


def temporal_flickering(videos: VideoBatch) -> DimensionScore:
    """Args: videos ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8 (>= 2 frames each)."""
    per_video = []
    for i, video in enumerate(as_video_list(videos)):
        if video.shape[0] < 2:
            raise ValueError(
                f"temporal_flickering: video {i} has {video.shape[0]} frame(s); at least 2 needed"
            )
        x = to_255(video)
        mae = (x[1:] - x[:-1]).abs().flatten(1).mean(dim=1).double()  # (f-1,)
        per_video.append((255.0 - mae.mean().item()) / 255.0)
    return DimensionScore("temporal_flickering", per_video, sum(per_video) / len(per_video))
