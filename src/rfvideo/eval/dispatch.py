"""One entry point for every implemented dimension: ``score_dimension(name, videos, backbone, ...)``.

The dimension's scorer and what it needs come from the registry (``rfvideo.eval.registry``). Backbone
forms (what ``load_backbones`` returns):
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

from rfvideo.eval.preprocess import VideoBatch, as_video_list
from rfvideo.eval.registry import ScoreContext, implemented_dimensions, in_loop_dimension
from rfvideo.eval.result import DimensionScore

IMPLEMENTED_DIMENSIONS = implemented_dimensions()


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
        fps: frame rate (dynamic_degree): one value or one per video.
        device: where the model runs.
    """
    dim = in_loop_dimension(dimension)
    if dim.needs_backbone and backbone is None:
        raise ValueError(f"dimension {dim.name!r} needs a backbone, got None")
    vids = as_video_list(videos)
    rates = [float(fps)] * len(vids) if isinstance(fps, (int, float)) else [float(r) for r in fps]
    ctx = ScoreContext(prompts=prompts, styles=styles, fps=rates, device=device)
    return dim.score(vids, backbone, ctx)  # type: ignore[misc]
