"""One entry point for every implemented dimension: ``score_dimension(name, videos, backbone, ...)``.

Backbone forms (what ``load_backbones`` returns):
    subject_consistency: DINO feature callable; background_consistency: ``HFCLIP``-like (``.image``) or an
    image-feature callable; aesthetic_quality: ``(clip_image, head)``; imaging_quality: MUSIQ callable;
    dynamic_degree: flow callable; motion_smoothness: interpolation callable; overall_consistency /
    temporal_style: ViCLIP-like; appearance_style: ``HFCLIP``-like (``.image``, ``.text``, ``.logit_scale``);
    temporal_flickering: None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from rfvideo.eval.aesthetic import aesthetic_quality
from rfvideo.eval.aggregate import canonical_dimension
from rfvideo.eval.consistency import background_consistency, subject_consistency
from rfvideo.eval.dynamic import dynamic_degree
from rfvideo.eval.flicker import temporal_flickering
from rfvideo.eval.imaging import imaging_quality
from rfvideo.eval.motion_smoothness import motion_smoothness
from rfvideo.eval.preprocess import VideoBatch
from rfvideo.eval.result import DimensionScore
from rfvideo.eval.text_video import appearance_style, overall_consistency, temporal_style

IMPLEMENTED_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
    "appearance_style",
    "temporal_style",
    "overall_consistency",
)


def _image_fn(backbone: Any) -> Any:
    return backbone.image if hasattr(backbone, "image") else backbone


def score_dimension(
    dimension: str,
    videos: VideoBatch,
    backbone: Any,
    *,
    prompts: Sequence[str] | None = None,
    styles: Sequence[str] | None = None,
    fps: float | Sequence[float] = 16.0,
    device: torch.device | str = "cpu",
) -> DimensionScore:
    """Score ``videos`` on one VBench dimension.

    Args:
        dimension: VBench key or spaced name.
        videos: ``(b f 3 h w)`` or list of ``(f 3 h w)``; float [0, 1] or uint8.
        backbone: the dimension's model (see module docstring).
        prompts: generation prompts (overall_consistency, temporal_style).
        styles: style phrases (appearance_style); defaults to ``prompts``.
        fps: frame rate (dynamic_degree).
        device: where the model runs.
    """
    d = canonical_dimension(dimension)
    if d not in IMPLEMENTED_DIMENSIONS:
        raise ValueError(
            f"dimension {d!r} is not implemented; implemented: {', '.join(IMPLEMENTED_DIMENSIONS)}"
        )
    if d != "temporal_flickering" and backbone is None:
        raise ValueError(f"dimension {d!r} needs a backbone, got None")
    if d == "subject_consistency":
        return subject_consistency(videos, backbone, device)
    if d == "background_consistency":
        return background_consistency(videos, _image_fn(backbone), device)
    if d == "temporal_flickering":
        return temporal_flickering(videos)
    if d == "motion_smoothness":
        return motion_smoothness(videos, backbone, device)
    if d == "dynamic_degree":
        return dynamic_degree(
            videos, backbone, list(fps) if not isinstance(fps, (int, float)) else fps, device
        )
    if d == "aesthetic_quality":
        clip_image, head = backbone
        return aesthetic_quality(videos, clip_image, head, device)
    if d == "imaging_quality":
        return imaging_quality(videos, backbone, device)
    if d in ("overall_consistency", "temporal_style"):
        if prompts is None:
            raise ValueError(f"dimension {d!r} needs prompts")
        fn = overall_consistency if d == "overall_consistency" else temporal_style
        return fn(videos, prompts, backbone, device)
    # appearance_style
    texts = styles if styles is not None else prompts
    if texts is None:
        raise ValueError("dimension 'appearance_style' needs styles (or prompts)")
    return appearance_style(
        videos, texts, backbone.image, backbone.text, float(getattr(backbone, "logit_scale", 100.0)), device
    )
