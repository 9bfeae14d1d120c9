"""Text-video dimensions, as VBench: overall consistency, temporal style (ViCLIP), appearance style (CLIP).

Overall consistency / temporal style (vbench/overall_consistency.py, temporal_style.py): 8 frames by
"middle" sampling, CLIP preprocessing applied to *uint8* frames (so the resized frames are rounded),
``encode_vision`` of the ``(1 8 3 224 224)`` clip and ``encode_text`` of the prompt, both L2-normalised;
score = their dot product; dataset: mean over videos.

Appearance style (vbench/appearance_style.py): every frame goes through PIL's bicubic resize + centre
crop; score per frame = ``logit_scale * cos(image, style text) / 100`` (the CLIP forward's
``logits_per_text / 100``; with real CLIP weights logit_scale is 100); per video: mean over frames;
dataset: sum over all frames / number of frames (frame-weighted).

Shape legend: t sampled frames, n frames, d embedding width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F

from rfvideo.eval.preprocess import (
    VideoBatch,
    as_video_list,
    clip_preprocess,
    clip_preprocess_pil,
    middle_frame_indices,
)
from rfvideo.eval.result import DimensionScore


class VideoTextModel(Protocol):
    """ViCLIP's interface as VBench calls it."""

    def encode_vision(
        self, image: torch.Tensor, test: bool = ...
    ) -> torch.Tensor: ...  # (1 t 3 h w) -> (1 d)

    def encode_text(self, text: str) -> torch.Tensor: ...  # -> (1 d)


def _prompts(prompts: str | Sequence[str], n: int, name: str) -> list[str]:
    out = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(out) != n:
        raise ValueError(f"{name}: {len(out)} prompts for {n} videos")
    return out


def _video_text(
    dimension: str,
    videos: VideoBatch,
    prompts: str | Sequence[str],
    model: VideoTextModel,
    device: torch.device | str,
    num_frames: int,
) -> DimensionScore:
    vids = as_video_list(videos)
    texts = _prompts(prompts, len(vids), dimension)
    cache: dict[str, torch.Tensor] = {}
    per_video = []
    with torch.no_grad():
        for video, text in zip(vids, texts):
            idx = middle_frame_indices(num_frames, video.shape[0])
            x = clip_preprocess(video[idx], round_uint8=True)
            v = model.encode_vision(x[None].to(device), test=True).float()
            v = v / v.norm(dim=-1, keepdim=True)
            if text not in cache:
                t = model.encode_text(text).float()
                cache[text] = t / t.norm(dim=-1, keepdim=True)
            per_video.append(float((v @ cache[text].T)[0][0].cpu()))
    return DimensionScore(dimension, per_video, sum(per_video) / len(per_video))


def overall_consistency(
    videos: VideoBatch,
    prompts: str | Sequence[str],
    viclip: VideoTextModel,
    device: torch.device | str = "cpu",
    num_frames: int = 8,
) -> DimensionScore:
    """VBench overall consistency: ViCLIP video-text cosine with the generation prompt.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        prompts: one prompt per video (or one for all).
        viclip: ViCLIP-like model (``encode_vision(x, test=True)``, ``encode_text(str)``).
        device: where the model runs.
        num_frames: frames sampled per video (VBench: 8).
    """
    return _video_text("overall_consistency", videos, prompts, viclip, device, num_frames)


def temporal_style(
    videos: VideoBatch,
    prompts: str | Sequence[str],
    viclip: VideoTextModel,
    device: torch.device | str = "cpu",
    num_frames: int = 8,
) -> DimensionScore:
    """VBench temporal style: same formula as overall consistency, on the temporal-style prompts."""
    return _video_text("temporal_style", videos, prompts, viclip, device, num_frames)


def appearance_style(
    videos: VideoBatch,
    styles: str | Sequence[str],
    clip_image: Callable[[torch.Tensor], torch.Tensor],
    clip_text: Callable[[list[str]], torch.Tensor],
    logit_scale: float = 100.0,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> DimensionScore:
    """VBench appearance style: per-frame CLIP image-text similarity with the style phrase.

    Args:
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] (rounded to uint8) or uint8.
        styles: the style text per video (VBench's ``auxiliary_info["appearance_style"]``), or one for all.
        clip_image: CLIP image encoder ``(n 3 224 224) -> (n d)`` (VBench: ViT-B/32).
        clip_text: CLIP text encoder ``list[str] -> (m d)`` (tokenisation included).
        logit_scale: the model's ``logit_scale.exp()`` (100 for OpenAI CLIP).
        device: where the models run.
        batch_size: frames per image-encoder forward.
    """
    vids = as_video_list(videos)
    texts = _prompts(styles, len(vids), "appearance_style")
    per_video, weights = [], []
    total, count = 0.0, 0
    with torch.no_grad():
        for video, text in zip(vids, texts):
            t = F.normalize(clip_text([text]).float(), dim=-1)
            x = clip_preprocess_pil(video)
            # VBench scores one frame per forward; batching changes results only by float noise.
            frame_scores = []
            for i in range(0, len(x), batch_size):
                v = F.normalize(clip_image(x[i : i + batch_size].to(device)).float(), dim=-1)
                sims = (logit_scale * v @ t.T.to(v.device))[:, 0].double().cpu() / 100
                frame_scores += sims.tolist()
            per_video.append(sum(frame_scores) / len(frame_scores))
            weights.append(float(len(frame_scores)))
            total += sum(frame_scores)
            count += len(frame_scores)
    return DimensionScore("appearance_style", per_video, total / count, weights)
