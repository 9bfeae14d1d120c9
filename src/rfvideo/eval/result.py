"""The result of one VBench dimension: per-video scores and the dataset aggregate."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DimensionScore:
    """Scores of one dimension over a set of videos.

    Attributes:
        dimension: VBench's key, e.g. "subject_consistency".
        per_video: one score per video, in input order (on VBench's 0..1 scale).
        aggregate: the dataset score exactly as VBench aggregates it (which is not always the mean of
            ``per_video``: e.g. consistency dimensions are frame-weighted).
        weights: per-video weights of the aggregate (e.g. compared frames); the aggregate equals
            ``sum(w * s) / sum(w)`` over videos, which is how ranks' partial results are combined.
    """

    dimension: str
    per_video: list[float]
    aggregate: float
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights = [1.0] * len(self.per_video)


def weighted_merge(parts: list[DimensionScore]) -> DimensionScore:
    """Combine partial results (e.g. from several ranks) of one dimension, keeping VBench's weighting."""
    if not parts:
        raise ValueError("weighted_merge: no parts")
    names = {p.dimension for p in parts}
    if len(names) != 1:
        raise ValueError(f"weighted_merge: mixed dimensions {sorted(names)}")
    per_video = [s for p in parts for s in p.per_video]
    weights = [w for p in parts for w in p.weights]
    total = sum(weights)
    if total <= 0:
        raise ValueError("weighted_merge: total weight is zero")
    agg = sum(s * w for s, w in zip(per_video, weights)) / total
    return DimensionScore(parts[0].dimension, per_video, agg, weights)
