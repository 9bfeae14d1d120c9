"""VBench's Quality / Semantic / Total aggregation (scripts/constant.py, scripts/cal_final_score.py).

normalised = (score - Min) / (Max - Min) * weight (no clipping); Quality = sum over quality dimensions /
sum of their weights (6.5); Semantic = sum over semantic dimensions / 9; Total = (4 Q + 1 S) / 5.
VBench's script counts a missing dimension as a raw score of 0; ``aggregate_scores`` instead reports the
aggregate over the dimensions it was given and labels it with them: such a subset aggregate is not a
VBench Total unless all 16 dimensions are present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

QUALITY_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "aesthetic_quality",
    "imaging_quality",
    "dynamic_degree",
)
SEMANTIC_DIMENSIONS = (
    "object_class",
    "multiple_objects",
    "human_action",
    "color",
    "spatial_relationship",
    "scene",
    "appearance_style",
    "temporal_style",
    "overall_consistency",
)
ALL_DIMENSIONS = QUALITY_DIMENSIONS + SEMANTIC_DIMENSIONS

NORMALIZE: dict[str, tuple[float, float]] = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
    "object_class": (0.0, 1.0),
    "multiple_objects": (0.0, 1.0),
    "human_action": (0.0, 1.0),
    "color": (0.0, 1.0),
    "spatial_relationship": (0.0, 1.0),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}
WEIGHT: dict[str, float] = {d: 1.0 for d in ALL_DIMENSIONS} | {"dynamic_degree": 0.5}
QUALITY_WEIGHT = 4.0
SEMANTIC_WEIGHT = 1.0


def canonical_dimension(name: str) -> str:
    """Accept VBench's spellings ("subject consistency", "subject_consistency") and return the key."""
    key = name.strip().lower().replace(" ", "_")
    if key not in NORMALIZE:
        raise ValueError(f"unknown VBench dimension {name!r}; known: {', '.join(ALL_DIMENSIONS)}")
    return key


def normalized_score(dimension: str, score: float) -> float:
    """``(score - Min) / (Max - Min) * weight`` (cal_final_score.get_nomalized_score)."""
    d = canonical_dimension(dimension)
    lo, hi = NORMALIZE[d]
    return (score - lo) / (hi - lo) * WEIGHT[d]


@dataclass
class Aggregate:
    """Quality / Semantic / Total over the dimensions that were computed.

    ``quality`` / ``semantic`` are None when no dimension of that group was given; ``total`` is the
    4:1 mix when both are present, else the one that is. ``complete`` is True only with all 16
    dimensions, i.e. when ``total`` is a VBench Total. ``label`` names the subset.
    """

    quality: float | None
    semantic: float | None
    total: float
    dimensions: tuple[str, ...]
    complete: bool
    label: str


def _group(scores: Mapping[str, float], group: tuple[str, ...]) -> float | None:
    present = [d for d in group if d in scores]
    if not present:
        return None
    return sum(normalized_score(d, scores[d]) for d in present) / sum(WEIGHT[d] for d in present)


def aggregate_scores(scores: Mapping[str, float]) -> Aggregate:
    """Aggregate raw dimension scores (0..1 scale, VBench keys or spaced names) like cal_final_score.py.

    With all 16 dimensions the result equals VBench's Quality / Semantic / Total. With a subset, each
    group is averaged over its present dimensions (weights renormalised) and the label says which.
    """
    clean = {canonical_dimension(k): float(v) for k, v in scores.items()}
    if not clean:
        raise ValueError("aggregate_scores: no scores")
    q = _group(clean, QUALITY_DIMENSIONS)
    s = _group(clean, SEMANTIC_DIMENSIONS)
    if q is not None and s is not None:
        total = (q * QUALITY_WEIGHT + s * SEMANTIC_WEIGHT) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    else:
        total = q if q is not None else s  # type: ignore[assignment]
    dims = tuple(d for d in ALL_DIMENSIONS if d in clean)
    complete = len(dims) == len(ALL_DIMENSIONS)
    label = "VBench Total (16/16 dimensions)" if complete else f"subset of {len(dims)}/16: " + ",".join(dims)
    return Aggregate(q, s, float(total), dims, complete, label)


def vbench_script_scores(scores: Mapping[str, float]) -> tuple[float, float, float]:
    """Exactly cal_final_score.py: missing dimensions count as raw 0. Returns (quality, semantic, total)."""
    clean = {canonical_dimension(k): float(v) for k, v in scores.items()}
    full = {d: clean.get(d, 0.0) for d in ALL_DIMENSIONS}
    q = sum(normalized_score(d, full[d]) for d in QUALITY_DIMENSIONS) / sum(
        WEIGHT[d] for d in QUALITY_DIMENSIONS
    )
    s = sum(normalized_score(d, full[d]) for d in SEMANTIC_DIMENSIONS) / sum(
        WEIGHT[d] for d in SEMANTIC_DIMENSIONS
    )
    total = (q * QUALITY_WEIGHT + s * SEMANTIC_WEIGHT) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    return q, s, total
