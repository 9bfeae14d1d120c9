"""The built-in VBench dimensions: each one's scorer, backbone loader and metadata, registered on import.

The six detector / classifier dimensions are registered without a scorer (``in_loop=False``): only
VBench's own evaluator (``rfvideo vbench --official``) computes them. ``rfvideo.eval`` imports this module,
so the registry is complete whenever the package is.

Shape legend: f frames, h/w height/width.
"""

from __future__ import annotations

from typing import Any

import torch

from rfvideo.eval import backbones as bb
from rfvideo.eval.aesthetic import aesthetic_quality
from rfvideo.eval.consistency import background_consistency, subject_consistency
from rfvideo.eval.dynamic import dynamic_degree
from rfvideo.eval.flicker import temporal_flickering
from rfvideo.eval.imaging import imaging_quality
from rfvideo.eval.motion_smoothness import motion_smoothness
from rfvideo.eval.registry import Dimension, ScoreContext, register
from rfvideo.eval.result import DimensionScore
from rfvideo.eval.text_video import appearance_style, overall_consistency, temporal_style

__all__ = ["BUILTIN"]


def _image_fn(backbone: Any) -> Any:
    return backbone.image if hasattr(backbone, "image") else backbone


def _need(ctx: ScoreContext, what: str, dimension: str) -> Any:
    value = getattr(ctx, what)
    if value is None:
        raise ValueError(f"dimension {dimension!r} needs {what}")
    return value


def _appearance(videos: list[torch.Tensor], b: Any, ctx: ScoreContext) -> DimensionScore:
    texts = ctx.styles if ctx.styles is not None else ctx.prompts
    if texts is None:
        raise ValueError("dimension 'appearance_style' needs styles (or prompts)")
    scale = float(getattr(b, "logit_scale", 100.0))
    return appearance_style(videos, texts, b.image, b.text, scale, ctx.device)


BUILTIN: list[Dimension] = [
    Dimension(
        "subject_consistency",
        "DINO ViT-B/16",
        "subject_consistency.py",
        lambda v, b, c: subject_consistency(v, b, c.device),
        bb.load_dino,
        min_frames=2,
    ),
    Dimension(
        "background_consistency",
        "CLIP ViT-B/32 image",
        "background_consistency.py",
        lambda v, b, c: background_consistency(v, _image_fn(b), c.device),
        bb.load_clip,
        min_frames=2,
    ),
    Dimension(
        "temporal_flickering",
        "none",
        "temporal_flickering.py",
        lambda v, b, c: temporal_flickering(v),
        min_frames=2,
    ),
    Dimension(
        "motion_smoothness",
        "AMT-S",
        "motion_smoothness.py",
        lambda v, b, c: motion_smoothness(v, b, c.device),
        bb.load_amt,
        min_frames=3,
    ),
    Dimension(
        "dynamic_degree",
        "RAFT",
        "dynamic_degree.py",
        lambda v, b, c: dynamic_degree(v, b, list(c.fps), c.device),
        bb.load_raft,
        needs=("fps",),
    ),
    Dimension(
        "aesthetic_quality",
        "CLIP ViT-L/14 + LAION linear head",
        "aesthetic_quality.py",
        lambda v, b, c: aesthetic_quality(v, b[0], b[1], c.device),
        bb.load_aesthetic,
    ),
    Dimension(
        "imaging_quality",
        "MUSIQ-SPAQ",
        "imaging_quality.py",
        lambda v, b, c: imaging_quality(v, b, c.device),
        bb.load_musiq,
    ),
    Dimension(
        "appearance_style",
        "CLIP ViT-B/32 image + text",
        "appearance_style.py",
        _appearance,
        bb.load_clip,
        needs=("styles",),
    ),
    Dimension(
        "temporal_style",
        "ViCLIP",
        "temporal_style.py",
        lambda v, b, c: temporal_style(v, _need(c, "prompts", "temporal_style"), b, c.device),
        bb.load_viclip,
        needs=("prompts",),
    ),
    Dimension(
        "overall_consistency",
        "ViCLIP",
        "overall_consistency.py",
        lambda v, b, c: overall_consistency(v, _need(c, "prompts", "overall_consistency"), b, c.device),
        bb.load_viclip,
        needs=("prompts",),
    ),
    # Detector / classifier dimensions: VBench's evaluator only (weights this package does not load).
    Dimension("object_class", "GRiT detector", "object_class.py"),
    Dimension("multiple_objects", "GRiT detector", "multiple_objects.py"),
    Dimension("human_action", "UMT action classifier", "human_action.py"),
    Dimension("color", "GRiT detector", "color.py"),
    Dimension("spatial_relationship", "GRiT detector", "spatial_relationship.py"),
    Dimension("scene", "Tag2Text", "scene.py"),
]
for _entry in BUILTIN:
    register(_entry)
