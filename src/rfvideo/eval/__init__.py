"""rfvideo.eval: VBench dimensions with pluggable backbones, VBench's aggregation, offline folder scoring."""

from rfvideo.eval.aesthetic import aesthetic_quality
from rfvideo.eval.aggregate import (
    ALL_DIMENSIONS,
    NORMALIZE,
    QUALITY_DIMENSIONS,
    SEMANTIC_DIMENSIONS,
    WEIGHT,
    Aggregate,
    aggregate_scores,
    canonical_dimension,
    normalized_score,
    vbench_script_scores,
)
from rfvideo.eval.backbones import HFCLIP, HFDINO, load_backbones
from rfvideo.eval.consistency import background_consistency, subject_consistency
from rfvideo.eval.dimensions import BUILTIN
from rfvideo.eval.dispatch import IMPLEMENTED_DIMENSIONS, score_dimension
from rfvideo.eval.dynamic import RAFTFlow, dynamic_degree
from rfvideo.eval.flicker import temporal_flickering
from rfvideo.eval.folder import prompt_from_filename, read_video, score_video_folder
from rfvideo.eval.imaging import imaging_quality
from rfvideo.eval.motion_smoothness import AMTInterpolator, motion_smoothness
from rfvideo.eval.result import DimensionScore, weighted_merge
from rfvideo.eval.text_video import appearance_style, overall_consistency, temporal_style

__all__ = [
    "ALL_DIMENSIONS",
    "AMTInterpolator",
    "Aggregate",
    "BUILTIN",
    "DimensionScore",
    "HFCLIP",
    "HFDINO",
    "IMPLEMENTED_DIMENSIONS",
    "NORMALIZE",
    "QUALITY_DIMENSIONS",
    "RAFTFlow",
    "SEMANTIC_DIMENSIONS",
    "WEIGHT",
    "aesthetic_quality",
    "aggregate_scores",
    "appearance_style",
    "background_consistency",
    "canonical_dimension",
    "dynamic_degree",
    "imaging_quality",
    "load_backbones",
    "motion_smoothness",
    "normalized_score",
    "overall_consistency",
    "prompt_from_filename",
    "read_video",
    "score_dimension",
    "score_video_folder",
    "subject_consistency",
    "temporal_flickering",
    "temporal_style",
    "vbench_script_scores",
    "weighted_merge",
]
