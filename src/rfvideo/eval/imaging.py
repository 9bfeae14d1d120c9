"""Imaging quality, as VBench (vbench/imaging_quality.py): MUSIQ (SPAQ) per frame.

Frames are float 0..255; with VBench's default ``"longer"`` mode, a frame whose long side exceeds 512 is
resized (bilinear, no antialias, float, no rounding) to ``(int(s * h), int(s * w))`` with
``s = 512 / max(h, w)``; then /255 and the model scores each frame (0..100). Per video: mean over frames;
dataset: mean over videos / 100. (VBench's per-video numbers stay on 0..100; ours are / 100 too, so that
every per-video score is on the dimension's scale.)

Shape legend: n frames, h/w height/width.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rfvideo.eval.preprocess import VideoBatch, as_video_list, resize, to_255
from rfvideo.eval.result import DimensionScore

MODES = ("longer", "shorter", "shorter_centercrop", "None")


def imaging_preprocess(video: torch.Tensor, mode: str = "longer") -> torch.Tensor:
    """VBench ``imaging_quality.transform``: ``(n 3 h w)`` -> float in [0, 1] at the scored size."""
    if mode not in MODES:
        raise ValueError(f"imaging quality mode must be one of {MODES}, got {mode!r}")
    x = to_255(video)
    h, w = x.shape[-2:]
    if mode.startswith("shorter") and min(h, w) > 512:
        s = 512.0 / min(h, w)
        x = resize(x, (int(s * h), int(s * w)), "bilinear")
        if mode == "shorter_centercrop":
            from rfvideo.eval.preprocess import center_crop

            x = center_crop(x, 512)
    elif mode == "longer" and max(h, w) > 512:
        s = 512.0 / max(h, w)
        x = resize(x, (int(s * h), int(s * w)), "bilinear")
    return x / 255.0


def imaging_quality(
    videos: VideoBatch,
    musiq: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    mode: str = "longer",
) -> DimensionScore:
    """VBench imaging quality.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        musiq: MUSIQ-like quality model, ``(1 3 h w)`` in [0, 1] -> score in 0..100 (pyiqa's MUSIQ
            normalises inside).
        device: where the model runs.
        mode: VBench's ``imaging_quality_preprocessing_mode`` (default "longer").
    """
    per_video = []
    for video in as_video_list(videos):
        x = imaging_preprocess(video, mode)
        acc = 0.0
        with torch.no_grad():
            for i in range(len(x)):
                acc += float(musiq(x[i : i + 1].to(device)))
        per_video.append(acc / len(x) / 100.0)
    return DimensionScore("imaging_quality", per_video, sum(per_video) / len(per_video))
