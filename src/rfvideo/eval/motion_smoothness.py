"""Motion smoothness, as VBench (vbench/motion_smoothness.py, AMT-S frame interpolation).

Frames are uint8. The even frames (0, 2, 4, ...) are fed in pairs to a frame-interpolation model (inputs
/255, replicate-padded to a multiple of 16, t = 0.5); each prediction is unpadded and turned back into
uint8 by ``(x * 255).clip(0, 255)`` and *truncation* (VBench's ``tensor2img``); the odd frames are the
targets. Per video: ``(255 - mean over pairs of mean |pred - target|) / 255``; dataset: mean over videos.
VBench on CPU never downscales (scale 1); on GPU it may downscale very large frames to fit memory.

Shape legend: f frames, h/w height/width, hp/wp padded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rfvideo.eval.dynamic import pad_to_multiple
from rfvideo.eval.preprocess import VideoBatch, as_video_list, to_uint8
from rfvideo.eval.result import DimensionScore

# (1 3 hp wp) in [0,1], (1 3 hp wp) in [0,1] -> middle frame (1 3 hp wp) in [0,1]
InterpFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class AMTInterpolator:
    """Adapter for an AMT network (VBench third_party ``networks.AMT-S.Model``): the t = 0.5 prediction."""

    def __init__(self, model: torch.nn.Module, scale_factor: float = 1.0) -> None:
        self.model = model
        self.scale_factor = scale_factor

    def __call__(self, frame0: torch.Tensor, frame1: torch.Tensor) -> torch.Tensor:
        embt = torch.full((1, 1, 1, 1), 0.5, dtype=frame0.dtype, device=frame0.device)
        return self.model(frame0, frame1, embt, scale_factor=self.scale_factor, eval=True)["imgt_pred"]


def motion_smoothness(
    videos: VideoBatch, interpolate: InterpFn, device: torch.device | str = "cpu"
) -> DimensionScore:
    """VBench motion smoothness.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] (rounded to uint8) or uint8;
            at least 3 frames each.
        interpolate: frame-interpolation callable (e.g. ``AMTInterpolator(amt_s)``).
        device: where the model runs.
    """
    per_video = []
    for i, video in enumerate(as_video_list(videos)):
        if video.shape[0] < 3:
            raise ValueError(f"motion_smoothness: video {i} has {video.shape[0]} frame(s); at least 3 needed")
        frames = to_uint8(video)
        h, w = frames.shape[-2:]
        inputs = pad_to_multiple(frames[0::2].float() / 255.0, 16)
        diffs = []
        with torch.no_grad():
            for k in range(inputs.shape[0] - 1):
                pred = (
                    interpolate(inputs[k : k + 1].to(device), inputs[k + 1 : k + 2].to(device)).float().cpu()
                )
                ph, pw = pred.shape[-2:]
                top, left = (ph - h) // 2, (pw - w) // 2
                pred = pred[..., top : top + h, left : left + w]
                pred_u8 = (pred[0] * 255.0).clamp(0, 255).to(torch.uint8)  # truncation, as numpy astype
                target = frames[2 * k + 1]
                diffs.append((pred_u8.int() - target.int()).abs().double().mean().item())
        per_video.append((255.0 - sum(diffs) / len(diffs)) / 255.0)
    return DimensionScore("motion_smoothness", per_video, sum(per_video) / len(per_video))
